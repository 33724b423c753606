import importlib

import pytest
import torch

from course_utils import config


def test_fast_mode_is_on_in_the_test_suite():
    assert config.FAST is True


def test_fast_reads_the_environment(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")
    assert importlib.reload(config).FAST is False
    monkeypatch.setenv("COURSE_FAST", "1")
    assert importlib.reload(config).FAST is True


def test_get_device_defaults_to_an_available_device(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    device = config.get_device()
    assert device.type in ("cuda", "mps", "cpu")
    if torch.cuda.is_available():
        assert device.type == "cuda"
    torch.zeros(1, device=device)


def test_course_device_overrides(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert config.get_device() == torch.device("cpu")


def test_unknown_device_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "tpu")
    with pytest.raises(ValueError, match="cuda, mps, cpu"):
        config.get_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_device_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="cannot use it"):
        config.get_device()


def test_seed_everything_makes_torch_repeatable():
    gen = config.seed_everything(123)
    a, a_gen = torch.randn(5), torch.randn(5, generator=gen)
    gen = config.seed_everything(123)
    assert torch.equal(a, torch.randn(5))
    assert torch.equal(a_gen, torch.randn(5, generator=gen))


def test_cache_dir_is_created_on_demand_and_git_ignored(tmp_path, monkeypatch):
    target = tmp_path / "nested" / "cache"
    monkeypatch.setenv("COURSE_CACHE", str(target))
    assert config.cache_dir() == target and target.is_dir()
    assert "data/cache/" in (config.REPO_DIR / ".gitignore").read_text().split()


def test_no_named_seed_outside_training_draws_training_images():
    """Examples, tests and evaluations (each with offsets up to 1,000) never render a training scene."""
    training = config.training_seeds()
    held_out = ("vae_test", "judge_test", "examples", "exercises", "tests", "eval_prompts", "eval_real")
    for name in held_out:
        for seed in range(config.SEEDS[name], config.SEEDS[name] + 1000):
            assert not any(seed in seeds for seeds in training.values()), (name, seed)
    starts = sorted(config.SEEDS[name] for name in held_out)
    assert all(b - a >= 1000 for a, b in zip(starts, starts[1:])), "held-out seed ranges overlap"


def test_training_streams_draw_one_seed_per_step():
    assert config.stream_seed(1, 0) == config.STREAM_STRIDE and config.stream_seed(1, 5) == config.STREAM_STRIDE + 5
    assert config.stream_seed(0, 3000) in config.training_seeds()["vae stream"]


def test_course_data_moves_the_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    assert importlib.reload(config).DATA_DIR == tmp_path.resolve()
    monkeypatch.delenv("COURSE_DATA")
    assert importlib.reload(config).DATA_DIR == config.REPO_DIR / "data"


@pytest.mark.parametrize("raw,fast", [("true", True), (" 1", True), ("YES", True), ("on", True), ("0", False),
                                      ("false", False), (" no ", False), ("", False)])
def test_course_fast_accepts_the_usual_spellings(monkeypatch, raw, fast):
    monkeypatch.setenv("COURSE_FAST", raw)
    assert importlib.reload(config).FAST is fast
    monkeypatch.setenv("COURSE_FAST", "1")
    importlib.reload(config)


def test_course_fast_refuses_anything_else_and_names_the_variable(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "maybe")
    with pytest.raises(ValueError, match="COURSE_FAST='maybe' is neither true nor false"):
        importlib.reload(config)
    monkeypatch.setenv("COURSE_FAST", "1")
    importlib.reload(config)
