import pytest
import torch

from course_utils import checkpoint
from course_utils.config import SEEDS
from course_utils.data import render_shapes, to_float
from course_utils.vae import VAE, VAE_CONFIG, load_vae, reconstruction_psnr, train_vae, vae_loss


@pytest.fixture(scope="module")
def vae():
    return load_vae()


def test_shapes_at_32_and_64(vae):
    for size in (32, 64):
        images = to_float(render_shapes(4, seed=0, size=size).images)
        latents = vae.encode(images)
        assert latents.shape == (4, 4, size // 4, size // 4)
        assert vae.decode(latents).shape == images.shape


def test_shipped_vae_reconstructs_fresh_images_above_30_db(vae):
    assert reconstruction_psnr(vae, n=300, size=32, seed=31_337) > 30
    assert reconstruction_psnr(vae, n=150, size=64, seed=31_338) > 30


def test_latents_are_scaled_to_unit_std(vae):
    latents = vae.encode(to_float(render_shapes(500, seed=5).images))
    assert abs(latents.std().item() - 1) < 0.1 and abs(latents.mean().item()) < 0.2
    assert vae.scale_factor.item() != 1.0


def test_encode_is_deterministic_and_sampling_uses_the_generator(vae):
    images = to_float(render_shapes(3, seed=1).images)
    assert torch.equal(vae.encode(images), vae.encode(images))
    a = vae.encode(images, torch.Generator().manual_seed(0), sample=True)
    b = vae.encode(images, torch.Generator().manual_seed(0), sample=True)
    assert torch.equal(a, b) and not torch.equal(a, vae.encode(images))


def test_decoded_images_are_in_range(vae):
    out = vae.decode(3 * torch.randn(2, 4, 8, 8))
    assert out.min() >= -1 and out.max() <= 1


def test_bad_shapes_are_clear_errors(vae):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        vae.encode(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="multiples of 4"):
        vae.encode(torch.zeros(1, 3, 30, 30))
    with pytest.raises(ValueError, match=r"\(B, 4, h, w\)"):
        vae.decode(torch.zeros(1, 3, 8, 8))


def test_loss_decreases_in_a_few_steps():
    torch.manual_seed(0)
    model = VAE(**VAE_CONFIG)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    images = to_float(render_shapes(16, seed=2).images)
    first = vae_loss(model, images)[1].item()
    for _ in range(15):
        loss, _ = vae_loss(model, images)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert vae_loss(model, images)[1].item() < 0.5 * first


def test_missing_weights_are_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "DATA_DIR", tmp_path)
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  vae.pt\n")
    monkeypatch.setattr(checkpoint, "SUMS_FILE", tmp_path / "SHA256SUMS")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_vae()


def test_images_outside_their_range_are_refused_with_the_remedy(vae):
    images = render_shapes(2, seed=SEEDS["tests"] + 20).images
    assert torch.equal(vae.encode(images), vae.encode(to_float(images)))  # uint8 is read as the documented range
    with pytest.raises(ValueError, match=r"images must be floats in \[-1, 1\].*got values from \d+ to 2\d\d"):
        vae.encode(images.float())  # 0..255 floats: silently garbage before
    with pytest.raises(ValueError, match="images must be uint8 in"):
        vae.encode(images.long())


def test_a_diverging_vae_run_stops_with_a_clear_error():
    with pytest.raises(FloatingPointError, match="VAE's training loss is not finite at step 1"):
        train_vae(steps=2, batch_size=4, lr=1e12)
