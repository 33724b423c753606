"""course_utils.binding: the colour swap, the pooled-vector transplant (against a forward pass written out with the
other caption's pooled vector), the held-out two-object scenes, and the transplant measurement's bookkeeping."""

import json

import pytest
import torch

from course_utils.binding import (
    binding_scenes,
    binding_source,
    pooled_from,
    recipe_result,
    scores,
    swap_colours,
)
from course_utils.binding import main as binding_main
from course_utils.checkpoint import load_model
from course_utils.config import get_device
from course_utils.data import Tokenizer, caption_for, render_shapes
from course_utils.dit import dit_small
from course_utils.judge import load_judge
from course_utils.mmdit import mmdit_small
from course_utils.patchify import unpatchify
from course_utils.results import check_result
from course_utils.retrain import main as retrain
from course_utils.vae import VAE, load_vae

A = ["a red circle above a blue square", "a green triangle to the left of a white diamond"]
B = ["a blue circle above a red square", "a white triangle to the left of a green diamond"]


def tiny_mmdit():
    """A small MMDiT with its zero-initialised modulation and output given weights, as training would."""
    torch.manual_seed(0)
    model = mmdit_small(dim=32, depth=2, heads=2, text_depth=1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "modulation" in name or "final" in name:
                p.normal_(0, 0.1)
    return model.eval()


def test_swap_colours_exchanges_the_colours_and_keeps_the_rest():
    record = render_shapes(1, seed=3, mode="relation").records[0]
    before = caption_for(record)
    swapped = swap_colours(record)
    (a, b), (sa, sb) = record["objects"], swapped["objects"]
    assert (sa["colour"], sb["colour"]) == (b["colour"], a["colour"])
    assert all(sa[k] == a[k] and sb[k] == b[k] for k in a if k != "colour")
    assert swapped["relation"] == record["relation"] and caption_for(record) == before  # the input is unchanged
    assert swap_colours(swapped) == record


def test_swap_colours_names_what_it_takes():
    with pytest.raises(ValueError, match="two-object .relation. record, got mode 'single'"):
        swap_colours(render_shapes(1, seed=3, mode="single").records[0])


def test_pooled_from_gives_the_partner_pooled_vector_and_keeps_the_own_tokens():
    model = tiny_mmdit()
    encoder = model.text_encoder
    ids_a, mask_a = Tokenizer().encode(A)
    ids_b, mask_b = Tokenizer().encode(B)
    null_ids, null_mask = model.null_condition()
    tokens_a, text_mask_a, pooled_a = encoder(ids_a, mask_a)
    with pooled_from(model, A, B):
        tokens, text_mask, pooled = model.text_encoder(ids_a, mask_a)
        null = model.text_encoder(null_ids, null_mask)
    assert model.text_encoder is encoder  # restored
    assert torch.equal(tokens, tokens_a) and torch.equal(text_mask, text_mask_a)
    assert torch.allclose(pooled, encoder(ids_b, mask_b)[2], atol=1e-6)
    assert (pooled - pooled_a).abs().max() > 1e-3  # the swapped caption pools to another vector
    assert all(torch.equal(x, y) for x, y in zip(null, encoder(null_ids, null_mask)))  # the null caption: untouched


def test_pooled_from_equals_a_forward_pass_written_out_with_the_other_pooled_vector():
    model = tiny_mmdit()
    x, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([0.3, 0.8])
    cond_a, cond_b = Tokenizer().encode(A), Tokenizer().encode(B)
    with torch.no_grad():
        image, text, mask, _, angles, grid = model.encode(x, t, cond_a)  # A's image and text tokens, mask
        y = model.t_embedder(t) + model.pooled_embedder(model.text_encoder(*cond_b)[2])  # B's pooled vector
        for block, rope in zip(model.blocks, angles):
            image, text = block(image, text, y, mask, rope)
        expected = unpatchify(model.final_layer(image, y), 2, *grid, 4)
        with pooled_from(model, A, B):
            got = model(x, t, cond_a)
        with pooled_from(model, A, A):
            same = model(x, t, cond_a)
        plain = model(x, t, cond_a)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
    assert torch.equal(same, plain)  # a caption's own pooled vector changes nothing, bit for bit
    assert (got - plain).abs().max() > 1e-3


def test_pooled_from_restores_the_encoder_after_an_error_and_names_bad_input():
    model = tiny_mmdit()
    encoder = model.text_encoder
    with pytest.raises(RuntimeError, match="inside"):
        with pooled_from(model, A, B):
            raise RuntimeError("inside")
    assert model.text_encoder is encoder
    with pytest.raises(ValueError, match="takes an MMDiT .* got DiT"):
        with pooled_from(dit_small(dim=32, depth=1, heads=2), A, B):
            pass
    with pytest.raises(ValueError, match="pair up one to one; got 2 and 1"):
        with pooled_from(model, A, B[:1]):
            pass


def test_binding_scenes_are_held_out_two_object_scenes_with_two_colours_and_two_shapes():
    records = binding_scenes(40, seed=0)
    assert len(records) == 40 and records == binding_scenes(40, seed=0)
    assert all(r["mode"] == "relation" for r in records)
    assert all(r["objects"][0][k] != r["objects"][1][k] for r in records for k in ("colour", "shape"))
    assert records != binding_scenes(40, seed=1)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        binding_scenes(0)


def test_binding_source_reports_shares_that_cannot_both_hold():
    model = tiny_mmdit()
    out = binding_source(model, n=6, cfg_scale=2.0, vae=VAE().eval())
    assert set(out) == {"n", "plain", "tokens", "pooled"} and out["n"] == 6
    assert all(0 <= out[k] <= 1 for k in ("plain", "tokens", "pooled"))
    assert out["tokens"] + out["pooled"] <= 1  # no image shows both bindings
    assert model.text_encoder.__class__.__name__ == "TextEncoder"


def test_recipe_result_records_a_finished_retrain_run_and_its_scores(tmp_path):
    run = tmp_path / "run"
    retrain(["mmdit", "--steps", "1", "--batch-size", "8", "--out", str(run)])
    result = check_result(recipe_result(run, n=4))
    assert result["name"] == "mmdit_gpu_recipe" and result["complete"]
    assert result["device"].startswith(str(get_device()))  # on CUDA with the GPU's name after it
    assert result["command"] == (f"python -m course_utils.retrain mmdit --steps 1 --seed 0 --batch-size 8 --out {run}"
                                 f" && python -m course_utils.binding {run} --recipe --n 4")
    budget = result["budget"]
    assert (budget["steps"], budget["batch_size"], budget["samples"], budget["n_eval"]) == (1, 8, 8, 4)
    assert result["seconds"] >= budget["train_seconds"] > 0
    vae, judge, model = load_vae(), load_judge(), load_model(run / "mmdit.pt").to(get_device())
    for cfg in (2.0, 3.0):  # the scores of the run's checkpoint, as measured on their own
        measured = scores(model, 4, cfg, vae, judge)
        assert {k: v[0] for k, v in result["variants"][f"cfg {cfg:g}"]["metrics"].items()} == measured
        assert result["aims"][f"cfg {cfg:g}"] == {"adherence_two": measured["adherence_two"] >= 0.88,
                                                  "adherence_single": measured["adherence_single"] >= 0.99}
    assert result["aims"]["train_seconds"] == (budget["train_seconds"] <= 180)
    binding_main([str(run), "--recipe", "--n", "4", "--save", str(tmp_path / "recipe.json")])  # what gpu_check runs
    saved = json.loads((tmp_path / "recipe.json").read_text())
    assert saved["variants"] == result["variants"] and saved["budget"] == budget
    with pytest.raises(FileNotFoundError, match="no report.json in .* folder of a finished retrain run"):
        recipe_result(tmp_path)
