"""The latent_vs_pixel experiment: equal token counts, the same scenes in both spaces, a pixel path through sampling
and scoring without a VAE, the equal-time rule, refused inputs, and a FAST run in the results schema."""

import math
from dataclasses import replace

import pytest
import torch

import course_utils.flow as flow
import course_utils.latent_vs_pixel as lvp
from course_utils.checkpoint import load_model
from course_utils.data import Tokenizer
from course_utils.dit import DiT
from course_utils.flow import euler_sample, generate, pixel_images
from course_utils.latents import load_latents
from course_utils.metrics import evaluate
from course_utils.results import check_result


@pytest.fixture
def no_vae(monkeypatch):
    """Loading the VAE fails: the pixel path must not touch it."""
    def refuse(*args, **kwargs):
        raise AssertionError("a pixel-space model's samples are images: no VAE may be loaded")
    monkeypatch.setattr(flow, "load_vae", refuse)


def pixel_dit(patch: int = 8, bias: float = 0.0) -> DiT:
    """A pixel DiT whose output layer's bias is `bias` (the DiT starts at v = 0: a bias makes the samples move)."""
    torch.manual_seed(0)
    model = DiT(replace(lvp.variant_config("pixel_p8"), patch_size=patch))
    torch.nn.init.constant_(model.final_layer.linear.bias, bias)
    return model.eval()


def test_the_latent_and_patch_8_pixel_dits_see_16_tokens_and_the_patch_2_pixel_dit_256():
    counted = {}
    for variant in lvp.VARIANTS:
        model = DiT(lvp.variant_config(variant))
        cfg = model.config
        x = torch.zeros(1, cfg.in_channels, cfg.input_size, cfg.input_size)
        counted[variant] = model.embed_patches(x)[0].shape[1]  # tokens the model actually makes
        assert lvp.tokens(cfg) == counted[variant]
    assert counted == {"latent_p2": 16, "pixel_p8": 16, "pixel_p2": 256}
    configs = {v: lvp.variant_config(v) for v in lvp.VARIANTS}
    assert {(c.in_channels, c.input_size) for c in configs.values()} == {(4, 8), (3, 32)}
    assert len({(c.dim, c.depth, c.heads, c.conditioning, c.pos) for c in configs.values()}) == 1  # the same DiT


def test_rendered_val_split_is_the_scenes_its_latents_were_encoded_from():
    scenes, latents = lvp.render_split("val"), load_latents("val", verbose=False)
    assert scenes.images.shape == (5000, 3, 32, 32) and scenes.images.dtype == torch.uint8
    assert scenes.captions == latents.captions
    encoded = load_model("vae").encode(scenes.images[:16])  # the same images give the same latents
    assert torch.allclose(encoded, latents.latents[:16], atol=1e-3)
    data = lvp.training_data("val", 64)
    assert data["pixel"].shape == (64, 3, 32, 32) and -1 <= data["pixel"].min() and data["pixel"].max() <= 1
    assert torch.equal(data["cond"][0], Tokenizer().encode(scenes.captions[:64])[0])


def test_a_pixel_model_generates_images_without_a_vae(no_vae):
    model = pixel_dit(bias=3.0)  # v = 3 everywhere: the samples leave [-1, 1] and must be clamped
    captions = ["a small red circle in the top left", "two large blue squares", "a large green square in the center"]
    images = generate(model, captions, steps=4, cfg_scale=2.0, seed=5)
    noise, cond = flow.caption_batch(model, captions, seed=5)
    by_hand = euler_sample(model, noise, cond, 4, model.null_condition(), 2.0).clamp(-1, 1)
    assert images.shape == (3, 3, 32, 32) and images.dtype == torch.float32
    assert torch.equal(images, by_hand) and images.max() == 1  # clamped to the range the judge reads
    assert torch.equal(generate(model, captions, vae=object(), steps=4, cfg_scale=2.0, seed=5), images)  # vae unused


def test_evaluate_scores_a_pixel_models_samples_as_images(no_vae):
    scored = evaluate(pixel_dit(), n=8, steps=2, seed=3)
    assert scored["images"].shape == (8, 3, 32, 32)
    assert -1 <= scored["images"].min() and scored["images"].max() <= 1
    assert 0 <= scored["adherence"] <= 1 and math.isfinite(scored["frechet"])


def test_pixel_images_refuse_samples_that_are_not_finite():
    with pytest.raises(ValueError, match="samples must be finite"):
        pixel_images(torch.full((1, 3, 32, 32), float("nan")))


def test_steps_are_as_many_as_fit_the_time():
    assert lvp.allot_steps(60, 0.087) == 689  # 60 / 0.087 = 689.7
    assert lvp.allot_steps(60, 1.76) == 34
    assert lvp.allot_steps(6, 0.2) == 30  # 6 / 0.2 is 29.999999999999996 in floating point
    assert lvp.allot_steps(1, 5) == 1  # at least one step
    for step in (0.013, 0.087, 0.25, 1.76):
        steps = lvp.allot_steps(60, step)
        assert steps * step <= 60 + 1e-9 < (steps + 1) * step  # fits the time; one more step would not


@pytest.mark.parametrize("seconds,step", [(0, 1), (60, 0), (-1, 1), (60, float("nan")), (float("inf"), 1),
                                          (True, 1), ("60", 1)])
def test_the_equal_time_rule_refuses_times_that_are_not_positive_and_finite(seconds, step):
    with pytest.raises(ValueError, match="must be a positive, finite number of seconds"):
        lvp.allot_steps(seconds, step)


def test_bad_variants_splits_sizes_and_scales_are_named_before_any_work():
    with pytest.raises(ValueError, match="variant must be one of latent_p2, pixel_p8, pixel_p2"):
        lvp.variant_config("pixel_p4")
    with pytest.raises(ValueError, match="the 32 px splits"):
        lvp.render_split("twins64_train")
    with pytest.raises(ValueError, match="n must be a whole number of scenes from 1 to 5,000"):
        lvp.training_data("val", 5001)
    with pytest.raises(ValueError, match="scale must be one of"):
        lvp.run_latent_vs_pixel("huge")
    with pytest.raises(ValueError, match="the variants are latent_p2, pixel_p8, pixel_p2"):
        lvp.run_latent_vs_pixel("fast", variants=["latent_p4"])


def test_activation_memory_counts_what_backward_keeps_and_not_the_weights():
    small, big = (DiT(lvp.variant_config(v)) for v in ("latent_p2", "pixel_p2"))
    cond = Tokenizer().encode(["two large blue squares"] * 8)
    a_small = lvp.activation_bytes(small, torch.randn(8, 4, 8, 8), cond)
    a_big = lvp.activation_bytes(big, torch.randn(8, 3, 32, 32), cond)
    assert a_big > 10 * a_small  # 16x the tokens
    # a batch of one keeps less than the weights' own bytes, which are not counted
    one = lvp.activation_bytes(small, torch.randn(1, 4, 8, 8), tuple(c[:1] for c in cond))
    assert 0 < one < 4 * sum(p.numel() for p in small.parameters())


@pytest.fixture(scope="module")
def fast_run(tmp_path_factory):
    progress = tmp_path_factory.mktemp("lvp") / "progress.json"
    return lvp.run_latent_vs_pixel("fast", progress=progress), progress


def test_a_fast_run_gives_every_variant_the_same_time_in_the_results_schema(fast_run):
    result, _ = fast_run
    check_result(result)
    assert result["complete"] and list(result["variants"]) == list(lvp.VARIANTS)
    budget = lvp.SCALES["fast"]
    for entry in result["variants"].values():
        m = entry["metrics"]
        assert entry["seeds"] == list(budget.seeds)
        assert m["steps"][0] == lvp.allot_steps(budget.seconds, m["step_ms"][0] / 1000)
        assert 0 <= m["adherence_single"][0] <= 1 and math.isfinite(m["frechet_single"][0])
    metric = {v: e["metrics"] for v, e in result["variants"].items()}
    assert [metric[v]["tokens"][0] for v in lvp.VARIANTS] == [16, 16, 256]
    assert metric["pixel_p2"]["gflops"][0] > 10 * metric["latent_p2"]["gflops"][0]
    assert metric["pixel_p2"]["activation_mb"][0] > 10 * metric["latent_p2"]["activation_mb"][0]
    assert "latent_p2" in lvp.report(result) and lvp.ratio(result, "tokens", "pixel_p2", "latent_p2") == 16


def test_a_finished_run_resumes_without_timing_or_training_again(fast_run, monkeypatch):
    result, progress = fast_run
    def refuse(*args, **kwargs):
        raise AssertionError("a finished (variant, seed) must not run again")
    monkeypatch.setattr(lvp, "measure_steps", refuse)
    monkeypatch.setattr(lvp, "run_variant", refuse)
    again = lvp.run_latent_vs_pixel("fast", progress=progress)
    assert again["variants"] == result["variants"] and again["complete"]
