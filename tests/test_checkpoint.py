import pytest
import torch

from course_utils import checkpoint
from course_utils.checkpoint import (
    load_checkpoint,
    load_model,
    load_shipped,
    save_checkpoint,
    save_model,
    sha256_file,
    write_atomic,
)
from course_utils.dit import DiT, dit_tiny
from course_utils.mmdit import mmdit_small

SIZE_LIMITS_MB = {"vae.pt": 2, "judge.pt": 2, "unet.pt": 5, "dit.pt": 5, "mmdit.pt": 8}  # the issues' limits


def test_save_then_load_round_trips_with_weights_only(tmp_path):
    model = torch.nn.Linear(3, 2)
    digest = save_checkpoint(tmp_path / "m.pt", model.state_dict(), {"width": 3}, step=7)
    ckpt = load_checkpoint(tmp_path / "m.pt", sha256=digest)
    assert ckpt["config"] == {"width": 3} and ckpt["step"] == 7
    assert all(torch.equal(ckpt["state_dict"][k], v) for k, v in model.state_dict().items())


def test_interrupted_write_leaves_no_file(tmp_path):
    def crash(tmp):
        open(tmp, "wb").write(b"half a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "x.pt", crash)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "m.pt"
    digest = save_checkpoint(path, torch.nn.Linear(2, 2).state_dict(), {})
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(path, sha256=digest)
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(path)  # no checksum given: the truncated pickle still fails clearly


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_shipped_files_match_their_checksums():
    sums = checkpoint.shipped_sums()
    assert {name for name in sums if not name.startswith("results/")} == set(SIZE_LIMITS_MB)
    for name, digest in sums.items():
        assert sha256_file(checkpoint.DATA_DIR / name) == digest, name


def test_shipped_files_are_small():
    for name in checkpoint.shipped_sums():
        if name.startswith("results/"):
            assert (checkpoint.DATA_DIR / name).stat().st_size < 100_000, name
            continue
        assert (checkpoint.DATA_DIR / name).stat().st_size < SIZE_LIMITS_MB[name] * 1024 * 1024, name


def test_a_shipped_file_that_was_replaced_is_refused(tmp_path, monkeypatch):
    (tmp_path / "vae.pt").write_bytes(b"not the vae")
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  vae.pt\n")
    monkeypatch.setattr(checkpoint, "DATA_DIR", tmp_path)
    monkeypatch.setattr(checkpoint, "SUMS_FILE", tmp_path / "SHA256SUMS")
    with pytest.raises(ValueError, match="corrupt or was replaced"):
        load_shipped("vae.pt")
    with pytest.raises(FileNotFoundError, match="not among the shipped files"):
        load_shipped("unet.pt")


def test_save_model_then_load_model_rebuilds_the_same_model(tmp_path):
    torch.manual_seed(0)
    model = dit_tiny("cross_attention", depth=2, pos="rope_axial")
    for p in model.parameters():  # non-zero everywhere, so a missed weight shows
        torch.nn.init.normal_(p, std=0.1)
    save_model(tmp_path / "dit.pt", model, step=3)
    loaded = load_model(tmp_path / "dit.pt")
    assert isinstance(loaded, DiT) and loaded.config == model.config and not loaded.training
    x, t = torch.randn(2, 4, 8, 8), torch.rand(2)
    cond = (torch.randint(1, 10, (2, 12)), torch.ones(2, 12, dtype=torch.bool))
    assert torch.equal(loaded(x, t, cond), model.eval()(x, t, cond))
    assert load_checkpoint(tmp_path / "dit.pt")["builder"] == "course_utils.dit.DiT"


def test_half_precision_checkpoints_load_as_float32(tmp_path):
    model = mmdit_small(depth=1)
    save_model(tmp_path / "m.pt", model, half=True)
    assert all(v.dtype == torch.float16 for v in load_checkpoint(tmp_path / "m.pt")["state_dict"].values()
               if v.is_floating_point())
    assert all(p.dtype == torch.float32 for p in load_model(tmp_path / "m.pt").parameters())


def test_every_shipped_name_loads_its_registered_class():
    for name, (file, builder) in checkpoint.SHIPPED.items():
        model = load_model(name)
        assert checkpoint.builder_name(model) == builder, name
        assert file in checkpoint.shipped_sums()


def test_load_model_refuses_unknown_names_and_foreign_builders(tmp_path):
    with pytest.raises(ValueError, match="a shipped model name .*vae, judge, unet, dit, mmdit"):
        load_model("gan")
    save_checkpoint(tmp_path / "evil.pt", {}, {}, builder="os.system")
    with pytest.raises(ValueError, match="names no course model"):
        load_model(tmp_path / "evil.pt")


def test_a_missing_or_malformed_checksum_file_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "DATA_DIR", tmp_path)
    monkeypatch.setattr(checkpoint, "SUMS_FILE", tmp_path / "SHA256SUMS")
    with pytest.raises(FileNotFoundError, match="SHA256SUMS is missing"):
        load_shipped("vae.pt")
    (tmp_path / "SHA256SUMS").write_text(f"{'a' * 64}  vae.pt\nnot a checksum line\n")
    with pytest.raises(ValueError, match="line 2 is not '<sha256>  <file>'"):
        load_shipped("vae.pt")


def test_shipped_denoisers_record_the_shipped_vae():
    vae = checkpoint.shipped_vae_sha256()
    assert vae == sha256_file(checkpoint.DATA_DIR / "vae.pt")
    for name in ("unet", "dit", "mmdit"):
        assert load_shipped(f"{name}.pt")["vae_sha256"] == vae, name


def test_a_denoiser_trained_on_the_shipped_vae_loads(tmp_path):
    model = dit_tiny("cross_attention", depth=1)
    save_model(tmp_path / "dit.pt", model, vae_sha256=checkpoint.shipped_vae_sha256())
    assert load_checkpoint(tmp_path / "dit.pt")["vae_sha256"] == checkpoint.shipped_vae_sha256()
    assert isinstance(load_model(tmp_path / "dit.pt"), DiT)
    save_model(tmp_path / "old.pt", model)  # an older run's checkpoint records no VAE: it loads unchecked
    assert "vae_sha256" not in load_checkpoint(tmp_path / "old.pt") and isinstance(load_model(tmp_path / "old.pt"), DiT)


def test_a_denoiser_trained_on_another_vae_is_refused_with_the_vae_it_expects(tmp_path):
    other = "ab" * 32
    save_model(tmp_path / "dit.pt", dit_tiny("cross_attention", depth=1), vae_sha256=other)
    with pytest.raises(ValueError, match=f"trained on the VAE with sha256 {other}.*git checkout -- data/vae.pt"):
        load_model(tmp_path / "dit.pt")
    with pytest.raises(ValueError, match="vae_sha256 must be a sha256"):
        save_model(tmp_path / "bad.pt", dit_tiny("cross_attention", depth=1), vae_sha256="not a digest")


def test_a_shipped_denoiser_is_refused_once_data_holds_another_vae(tmp_path, monkeypatch):
    """A copy of data/ whose SHA256SUMS names another vae.pt (as after a retrain --install of the VAE alone)."""
    import shutil

    shutil.copy(checkpoint.DATA_DIR / "unet.pt", tmp_path / "unet.pt")
    sums = checkpoint.shipped_sums()
    shipped_vae, sums["vae.pt"] = sums["vae.pt"], "0" * 64
    (tmp_path / "SHA256SUMS").write_text("".join(f"{digest}  {name}\n" for name, digest in sums.items()))
    monkeypatch.setattr(checkpoint, "DATA_DIR", tmp_path)
    monkeypatch.setattr(checkpoint, "SUMS_FILE", tmp_path / "SHA256SUMS")
    with pytest.raises(ValueError, match=f"unet was trained on the VAE with sha256 {shipped_vae}.*lists vae.pt with "
                                         f"sha256 {'0' * 64}.*retrain"):
        load_model("unet")
