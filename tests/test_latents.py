import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from course_utils import latents as latents_mod
from course_utils.config import SEEDS
from course_utils.data import MODES, Tokenizer
from course_utils.latents import cache_status, load_latents, mode_sample_weights


@pytest.fixture
def tiny_split(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.setitem(latents_mod.SPLITS, "tiny", (60, 11, 32, latents_mod.MODE_SHARES))
    return "tiny"


def test_build_then_load_from_cache(tiny_split, monkeypatch):
    assert cache_status(tiny_split) == "missing"
    built = load_latents(tiny_split, verbose=False)
    assert built.latents.shape == (60, 4, 8, 8) and built.latents.dtype == torch.float32
    assert built.ids.shape == built.mask.shape == (60, Tokenizer().max_len)
    assert Tokenizer().decode(built.ids) == built.captions
    assert [r["mode"] for r in built.records].count("pair") == 12  # 20% pair scenes
    assert cache_status(tiny_split) == "ok"

    def no_rebuild(*args, **kwargs):
        raise AssertionError("a valid cache must not be rebuilt")

    monkeypatch.setattr(latents_mod, "build_latents", no_rebuild)
    cached = load_latents(tiny_split, verbose=False)
    assert torch.equal(cached.latents, built.latents) and cached.captions == built.captions
    assert cached.records == built.records


def test_a_missing_split_wanted_twice_at_once_is_built_once(tiny_split, monkeypatch):
    """Two threads stand in for two processes: the file lock is an OS lock on its own open file in each call."""
    built, real_build = [], latents_mod.build_latents

    def slow_build(*args, **kwargs):
        built.append(args)
        time.sleep(0.5)  # the other caller arrives while this one builds
        return real_build(*args, **kwargs)

    monkeypatch.setattr(latents_mod, "build_latents", slow_build)
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: load_latents(tiny_split, verbose=False), range(2))
    assert len(built) == 1 and torch.equal(first.latents, second.latents) and first.captions == second.captions


def test_building_is_deterministic(tiny_split):
    a = latents_mod.build_latents(40, seed=3)
    b = latents_mod.build_latents(40, seed=3)
    assert torch.equal(a.latents, b.latents) and a.captions == b.captions


def test_corrupt_cache_is_detected_and_rebuilt(tiny_split, tmp_path):
    good = load_latents(tiny_split, verbose=False)
    path = tmp_path / f"latents_{tiny_split}.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert cache_status(tiny_split) == "corrupt"
    assert torch.equal(load_latents(tiny_split, verbose=False).latents, good.latents)
    assert cache_status(tiny_split) == "ok"


def test_stale_cache_is_rebuilt(tiny_split, tmp_path, monkeypatch):
    load_latents(tiny_split, verbose=False)
    monkeypatch.setitem(latents_mod.SPLITS, "tiny", (60, 12, 32, latents_mod.MODE_SHARES))  # a new recipe: another seed
    assert cache_status(tiny_split) == "stale"
    load_latents(tiny_split, verbose=False)
    manifest = json.loads((tmp_path / f"latents_{tiny_split}.json").read_text())
    assert manifest["recipe"]["seed"] == 12 and cache_status(tiny_split) == "ok"


def test_interrupted_build_leaves_nothing_that_loads(tiny_split, tmp_path, monkeypatch):
    def crash(obj, path):
        open(path, "wb").write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(latents_mod.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        load_latents(tiny_split, verbose=False)
    assert cache_status(tiny_split) == "missing"
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".pt"]


def test_unknown_split_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown split 'test'"):
        load_latents("test")


def test_latents_have_unit_std_and_the_promised_mode_shares(tiny_split, monkeypatch):
    monkeypatch.setitem(latents_mod.SPLITS, "tiny", (500, 11, 32, latents_mod.MODE_SHARES))
    data = load_latents(tiny_split, verbose=False)
    assert abs(data.latents.std().item() - 1) < 0.1  # the VAE's scale factor makes latents unit std
    modes = [r["mode"] for r in data.records]
    assert (modes.count("single"), modes.count("relation"), modes.count("pair")) == (200, 200, 100)


def test_course_splits_draw_from_the_named_training_seeds():
    assert latents_mod.SPLITS["train"][1] == SEEDS["train_latents"]
    assert latents_mod.SPLITS["val"][1] == SEEDS["val_latents"]


def test_fast_mode_cuts_the_64px_twins_splits_under_their_own_cache_names():
    from course_utils.config import FAST

    assert FAST  # the test command sets COURSE_FAST=1
    assert [latents_mod.SPLITS[s][0] for s in ("twins64_train", "twins64_val")] == [1_024, 256]
    assert latents_mod._paths("twins64_train")[0].name == "latents_twins64_train_fast.pt"
    assert latents_mod._paths("train")[0].name == "latents_train.pt"  # the 32 px splits keep their full size
    assert latents_mod.SPLITS["train"][0] == 50_000


def test_mode_weights_give_each_sample_its_scene_modes_weight():
    scenes = torch.tensor([[MODES.index(m), -1] for m in ("single", "relation", "pair", "relation")])
    assert mode_sample_weights(scenes, {"relation": 2.5}).tolist() == [1.0, 2.5, 1.0, 2.5]
    with pytest.raises(ValueError, match="unknown scene mode"):
        mode_sample_weights(scenes, {"relations": 2.0})


def test_a_manifest_that_is_json_but_not_an_object_is_corrupt_and_rebuilt(tiny_split, tmp_path):
    good = load_latents(tiny_split, verbose=False)
    (tmp_path / f"latents_{tiny_split}.json").write_text("[1, 2, 3]")
    assert cache_status(tiny_split) == "corrupt"
    assert torch.equal(load_latents(tiny_split, verbose=False).latents, good.latents)
    assert cache_status(tiny_split) == "ok"
