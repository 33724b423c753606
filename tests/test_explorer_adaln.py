"""The AdaLN explorer: with its offsets at zero it shows the DiT's own modulation, an offset moves one channel by
exactly that much, and its gated update is what the block really adds to the residual stream."""

import numpy as np
import pytest
import torch

from course_utils.data import Tokenizer
from course_utils.dit import dit_tiny
from course_utils.explorers import ADALN_CAPTIONS, adaln_explorer, adaln_view


def trained_like_dit(conditioning: str = "adaln_zero", depth: int = 2):
    """A small random DiT whose modulation is not zero, as training would leave it."""
    torch.manual_seed(0)
    model = dit_tiny(conditioning, depth=depth)
    with torch.no_grad():
        for block in model.blocks:
            block.modulation.lin.weight.copy_(0.05 * torch.randn_like(block.modulation.lin.weight))
            block.modulation.lin.bias.copy_(0.05 * torch.randn_like(block.modulation.lin.bias))
    return model.eval()


@pytest.fixture(scope="module")
def latent():
    return torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(5))


def model_modulation(model, t: float, caption: str, block: int):
    """The attention branch's ModulationOut from the model's public method, each field (D,)."""
    with torch.no_grad():
        msa, _ = model.modulation(torch.tensor([t]), Tokenizer(model.config.max_len).encode([caption]), block)
    return msa.shift[0], msa.scale[0], None if msa.gate is None else msa.gate[0]


@pytest.mark.parametrize("conditioning", ["adaln", "adaln_zero"])
def test_zero_offsets_show_the_models_own_modulation(conditioning, latent):
    model = trained_like_dit(conditioning)
    caption = ADALN_CAPTIONS[2]
    view = adaln_view(model, latent, t=0.3, caption=caption, block=1)
    shift, scale, gate = model_modulation(model, 0.3, caption, block=1)
    assert np.array_equal(view["shift"], shift.numpy()) and np.array_equal(view["scale"], scale.numpy())
    expected_gate = np.ones(model.config.dim, np.float32) if gate is None else gate.numpy()  # plain adaLN: no gate
    assert np.array_equal(view["gate"], expected_gate)
    assert np.abs(view["scale"]).max() > 0.01  # the modulation is not trivially zero


@pytest.mark.parametrize("which", ["shift", "scale", "gate"])
def test_an_offset_moves_exactly_one_channel_by_exactly_the_offset(which, latent):
    model = trained_like_dit()
    base = adaln_view(model, latent, t=0.3, channel=5)
    moved = adaln_view(model, latent, t=0.3, channel=5, **{which: 0.5})
    for name in ("shift", "scale", "gate"):
        change = moved[name] - base[name]
        offset = 0.5 if name == which else 0.0
        assert change[5] == pytest.approx(offset, abs=1e-6)
        assert np.array_equal(np.delete(change, 5), np.zeros(model.config.dim - 1))
    assert "channel 5:" in moved["text"]


def test_gated_update_is_what_the_block_adds_when_its_mlp_branch_is_off(latent):
    model = trained_like_dit()
    dim, block = model.config.dim, 1
    with torch.no_grad():  # the MLP branch's gate is the last of the six (D,) chunks: zero it
        model.blocks[block].modulation.lin.weight[5 * dim :] = 0
        model.blocks[block].modulation.lin.bias[5 * dim :] = 0
    t, caption = 0.6, ADALN_CAPTIONS[1]
    view = adaln_view(model, latent, t=t, caption=caption, block=block, seed=3)
    seen = {}
    model.blocks[block].register_forward_hook(lambda module, args, out: seen.update(x=args[0], out=out))  # -> None
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        model((1 - t) * noise + t * latent, torch.tensor([t]), Tokenizer().encode([caption]))
    assert torch.allclose(seen["out"] - seen["x"], torch.from_numpy(view["gated"])[None], atol=1e-5)
    assert np.allclose(view["normalised"].mean(1), 0, atol=1e-5)  # LayerNorm output per token
    assert view["kept"] > 0


def test_view_depends_on_time_and_caption(latent):
    model = trained_like_dit()
    a = adaln_view(model, latent, t=0.1)
    b = adaln_view(model, latent, t=0.9)
    c = adaln_view(model, latent, t=0.1, caption="two large white diamonds")
    assert not np.allclose(a["scale"], b["scale"]) and not np.allclose(a["scale"], c["scale"])


def test_adaln_zero_at_init_keeps_nothing_of_the_branch(latent):
    view = adaln_view(dit_tiny("adaln_zero").eval(), latent)
    assert view["kept"] == 0.0 and "keeps 0.0%" in view["text"]


def test_plain_adaln_keeps_the_whole_branch(latent):
    view = adaln_view(trained_like_dit("adaln"), latent)
    assert view["kept"] == pytest.approx(1.0) and "keeps 100.0%" in view["text"]


def test_explorer_redraws_when_sliders_move(latent):
    explorer = adaln_explorer(trained_like_dit(), latent=latent)
    first_image, first_text = explorer.image.value, explorer.text.value
    assert "t = 0.50" in first_text
    explorer.controls["t"].value = 0.9
    assert "t = 0.90" in explorer.text.value and explorer.image.value != first_image
    explorer.controls["channel"].value = 7
    before = explorer.view["gate"].copy()
    explorer.controls["gate"].value = -1.0
    assert "channel 7:" in explorer.text.value and explorer.text.value != first_text
    assert explorer.view["gate"][7] == pytest.approx(before[7] - 1.0, abs=1e-6)
    assert np.array_equal(np.delete(explorer.view["gate"], 7), np.delete(before, 7))
    assert [ax.get_title()[:3] for ax in explorer.figure.axes] == ["(a)", "(b)", "(c)"]
    assert explorer.controls["channel"].max == 127 and explorer.controls["block"].max == 1


def test_explorer_noises_the_example_latent_by_default():
    explorer = adaln_explorer(trained_like_dit(depth=1))
    assert explorer.view["normalised"].shape == (16, 128)  # 8x8 latent of the 32x32 example scene, patch 2


def test_view_refuses_a_block_channel_or_time_out_of_range():
    torch.manual_seed(0)
    model = dit_tiny("adaln_zero", depth=2)
    latent = torch.randn(1, 4, 8, 8)
    for bad, message in (({"block": 2}, "block must be an integer from 0 to 1"),
                         ({"channel": 128}, "channel must be an integer from 0 to 127"),
                         ({"channel": -1}, "channel must be an integer from 0 to 127"),
                         ({"t": 1.5}, r"t must be a time in \[0, 1\]")):
        with pytest.raises(ValueError, match=message):
            adaln_view(model, latent, **bad)
