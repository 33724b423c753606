"""modulation_semantics: the transplant hook at its two ends, the channel ranking against a hand computation through
model.modulation, and named errors."""

import pytest
import torch

from course_utils.checkpoint import load_model
from course_utils.config import SEEDS
from course_utils.data import Tokenizer, render_shapes
from course_utils.flow import euler_sample, evaluating
from course_utils.modulation_semantics import (
    PAIRS,
    channel_changes,
    channel_mask,
    check_k,
    consistency,
    rank_channels,
    run_modulation_semantics,
    sample_transplant,
    topk_overlap,
    word_captions,
)

RECORDS = render_shapes(4, seed=SEEDS["tests"] + 123, mode="single").records


@pytest.fixture(scope="module")
def dit():
    return load_model("dit")


def plain_sample(model, captions, seed, steps=3):
    """Caption sampling written out: seeded noise, Euler with CFG 2 against the null caption."""
    ids, mask = Tokenizer(model.config.max_len).encode(captions)
    cfg = model.config
    noise = torch.randn(len(captions), cfg.in_channels, cfg.input_size, cfg.input_size,
                        generator=torch.Generator().manual_seed(seed))
    with evaluating(model):
        return euler_sample(model, noise, (ids, mask), steps, model.null_condition(), 2.0)


def test_word_captions_differ_in_the_one_word():
    caps_a, caps_b = word_captions(RECORDS, "colour")
    for a, b in zip(caps_a, caps_b):
        assert "red" in a.split() and "blue" in b.split()
        assert a.replace("red", "blue") == b


def test_transplanting_every_channel_samples_caption_b_and_none_samples_caption_a(dit):
    caps_a, caps_b = word_captions(RECORDS, "shape")
    dim = dit.config.dim
    all_b = sample_transplant(dit, caps_a, caps_b, channel_mask(range(dim), dim), seed=7, steps=3)
    none = sample_transplant(dit, caps_a, caps_b, channel_mask([], dim), seed=7, steps=3)
    assert torch.equal(all_b, plain_sample(dit, caps_b, 7))
    assert torch.equal(none, plain_sample(dit, caps_a, 7))
    some = sample_transplant(dit, caps_a, caps_b, channel_mask(range(8), dim), seed=7, steps=3)
    assert not torch.equal(some, none) and not torch.equal(some, all_b)


def test_ranking_agrees_with_model_modulation_per_block(dit):
    caps_a, caps_b = word_captions(RECORDS, "size")
    tok = Tokenizer(dit.config.max_len)
    cond_a, cond_b = tok.encode(caps_a), tok.encode(caps_b)
    t = torch.full((len(caps_a),), 0.5)
    total = torch.zeros(len(caps_a), dit.config.dim, dtype=torch.float64)
    with torch.no_grad():
        for block in range(len(dit.blocks)):
            for ma, mb in zip(dit.modulation(t, cond_a, block), dit.modulation(t, cond_b, block)):
                total += (ma.shift.double() - mb.shift.double()).abs() + (ma.scale.double() - mb.scale.double()).abs()
        c_a, c_b = dit.condition(t, cond_a), dit.condition(t, cond_b)
        (fa,), (fb,) = dit.final_layer.norm.modulation(c_a), dit.final_layer.norm.modulation(c_b)
        total += (fa.shift.double() - fb.shift.double()).abs() + (fa.scale.double() - fb.scale.double()).abs()
    changes = channel_changes(dit, caps_a, caps_b, times=(0.5,))
    torch.testing.assert_close(changes[:, 0].double(), total, rtol=1e-5, atol=1e-6)
    assert rank_channels(changes)[:5].tolist() == total.mean(0).argsort(descending=True)[:5].tolist()


def test_consistency_is_one_for_identical_contexts_and_near_chance_for_noise():
    same = torch.arange(32.0).expand(6, 3, 32)
    c = consistency(same, k=4)
    assert c["times"][0] == 1.0 and c["contexts"][0] == 1.0 and c["chance"] == 4 / 32
    noise = torch.rand(40, 3, 32, generator=torch.Generator().manual_seed(0))
    r = consistency(noise, k=4)
    assert r["times"][1] < 4 / 32 < r["times"][2]
    assert topk_overlap(torch.tensor([3.0, 2, 1, 0]), torch.tensor([0.0, 1, 2, 3]), 2) == 0.0


def test_unknown_words_and_bad_k_are_named():
    with pytest.raises(ValueError, match="attribute must be one of"):
        word_captions(RECORDS, "texture")
    for k in (-1, 129, 2.5, True):
        with pytest.raises(ValueError, match="k must be an integer"):
            check_k(k, 128)
    with pytest.raises(ValueError, match="scale must be one of"):
        run_modulation_semantics("huge")
    assert set(PAIRS) == {"colour", "shape", "size"}
