"""Lesson 05's rope_artifacts comparison: the stripe-energy metric (metrics.stripe_energy, power_spectrum), the
comparison's variants and budgets, and its probe."""

import math
from dataclasses import asdict, replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from course_utils import comparisons, metrics
from course_utils.comparisons import ARTIFACT_CFG, ARTIFACT_SIZE, COMPARISONS, PROBES, Scale
from course_utils.config import SEEDS
from course_utils.data import render_shapes
from course_utils.experiments import run_comparison
from course_utils.metrics import power_spectrum, stripe_energy
from course_utils.results import check_result, difference, verdict
from course_utils.rope import mixed_frequencies
from course_utils.train import LESSON_RUN

# what the probe reads of a model when generate is faked: a latent-space denoiser (4 channels)
LATENT_MODEL = SimpleNamespace(config=SimpleNamespace(in_channels=4))

TEST = SEEDS["tests"] + 170  # this file's scenes (+ a small offset)
TINY = Scale(steps=3, seeds=(0, 1), batch_size=8, n_eval=4, n_val=16)
# lesson 05's budget (DESIGN: a notebook's full mode within 10 minutes on 2 CPU cores): section 6 takes about 4
# minutes, so this comparison may take about 5.5. Costs on 2 free cores: a dit_tiny step of batch 64 about 0.1 s, one
# 64 px sample (25 Euler steps with CFG, VAE decode, the judge) about 0.05 s
LESSON_SECONDS, STEP_SECONDS, SAMPLE_SECONDS = 330, 0.1, 0.05


def _grid(h=64, w=64):
    return torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")


def _as_images(pattern: torch.Tensor, n: int = 2) -> torch.Tensor:
    """(H, W) pattern -> (n, 3, H, W) float images in [-1, 1], the pattern scaled to fill the range in every channel."""
    pattern = pattern - pattern.min()
    pattern = 2 * pattern / pattern.max() - 1
    return pattern.float()[None, None].expand(n, 3, *pattern.shape).clone()


def _reference_share(images: torch.Tensor) -> np.ndarray:
    """Independent computation in numpy: (var(row means) + var(column means)) / var(pixels), channels pooled."""
    x = images.double().numpy()
    rows, cols = x.mean(axis=3), x.mean(axis=2)  # (N, 3, H), (N, 3, W)
    return (rows.var(axis=2).sum(1) + cols.var(axis=2).sum(1)) / x.var(axis=(2, 3)).sum(1)


def test_pure_stripes_along_either_axis_put_all_their_energy_on_the_axes():
    y, x = _grid()
    gen = torch.Generator().manual_seed(0)
    profile = torch.rand(64, generator=gen, dtype=torch.float64)  # any profile: stripes of random heights
    for pattern in (torch.sin(2 * math.pi * 5 * y / 64), torch.sin(2 * math.pi * 3 * x / 64), profile[y.long()],
                    profile[x.long()]):
        assert torch.allclose(stripe_energy(_as_images(pattern)), torch.ones(2, dtype=torch.float64), atol=1e-9)


def test_diagonal_patterns_score_zero_and_isotropic_noise_the_share_of_axis_bins():
    y, x = _grid()
    for pattern in (torch.sin(2 * math.pi * 3 * (x + y) / 64), torch.cos(2 * math.pi * 7 * (x - 2 * y) / 64),
                    (-1.0) ** (x + y)):  # two diagonal waves and a checkerboard
        assert stripe_energy(_as_images(pattern)).max() < 1e-9
    noise = torch.rand(400, 3, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    shares = stripe_energy(noise)
    expected = (64 + 64 - 2) / (64 * 64 - 1)  # white noise spreads evenly over the 4,095 non-DC bins, 126 on the axes
    assert abs(shares.mean().item() - expected) < 3 * shares.std().item() / math.sqrt(400)
    assert shares.mean() < 0.04


def test_stripe_energy_equals_the_variance_of_row_and_column_means_over_the_pixel_variance():
    real = render_shapes(50, seed=TEST, size=64, mode="mixed").images
    noise = torch.rand(20, 3, 48, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1  # not square
    for images in (real, noise, real.float() / 127.5 - 1):
        as_float = images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images
        np.testing.assert_allclose(stripe_energy(images).numpy(), _reference_share(as_float), rtol=1e-6)


def test_objects_lined_up_in_a_row_score_higher_than_the_same_objects_scattered():
    """Why the metric sees axis segregation: three equal round blobs in one row against the same three blobs on a
    diagonal (and a single blob, for scale)."""
    y, x = _grid()

    def blobs(centres):
        return sum(torch.exp(-((y - r) ** 2 + (x - c) ** 2) / (2 * 3.0**2)) for r, c in centres)

    row, column = blobs([(32, 10), (32, 32), (32, 54)]), blobs([(10, 20), (32, 20), (54, 20)])
    diagonal, anti = blobs([(10, 10), (32, 32), (54, 54)]), blobs([(10, 54), (32, 32), (54, 10)])
    lined_up = stripe_energy(torch.cat([_as_images(row), _as_images(column)]))
    scattered = stripe_energy(torch.cat([_as_images(diagonal), _as_images(anti)]))
    assert lined_up.min() > 2 * scattered.max(), (lined_up, scattered)


def test_real_shapes_images_at_64_px_have_a_stable_baseline_above_noise_and_far_below_stripes():
    a = stripe_energy(render_shapes(300, seed=TEST + 1, size=64, mode="single").images)
    b = stripe_energy(render_shapes(300, seed=TEST + 2, size=64, mode="single").images)
    assert 0.08 < a.mean() < 0.35 and 0.08 < b.mean() < 0.35  # squares and the 3x3 grid: more than noise's 0.03
    assert abs(a.mean() - b.mean()) < 0.02  # a baseline to divide by, not noise


def test_flat_images_have_no_structure_and_score_zero():
    for value in (-0.81, 0.0, 0.3):
        flat = torch.full((3, 3, 64, 64), value)
        assert stripe_energy(flat).eq(0).all() and power_spectrum(flat).eq(0).all()


def test_the_mean_power_spectrum_sums_to_one_and_its_axes_carry_the_mean_stripe_energy():
    images = render_shapes(40, seed=TEST + 3, size=64, mode="relation").images
    spectrum = power_spectrum(images)
    assert spectrum.shape == (64, 64) and abs(spectrum.sum().item() - 1) < 1e-9
    assert spectrum[32, 32] == 0  # frequency 0 at the centre, removed
    on_axes = spectrum[32, :].sum() + spectrum[:, 32].sum()
    assert abs(on_axes.item() - stripe_energy(images).mean().item()) < 1e-9
    y, _ = _grid()
    stripes = power_spectrum(_as_images(torch.sin(2 * math.pi * 5 * y / 64)))
    assert stripes[32 + 5, 32] == pytest.approx(0.5) and stripes[32 - 5, 32] == pytest.approx(0.5)  # ky = +-5


def test_bad_input_is_refused_with_what_was_given():
    good = torch.zeros(2, 3, 64, 64)
    cases = [
        (good[0], r"\(B, 3, H, W\).*got \(3, 64, 64\)"),  # one image, no batch axis
        (torch.zeros(2, 1, 64, 64), r"\(B, 3, H, W\).*got \(2, 1, 64, 64\)"),  # grey
        (good + 2.0, r"floats in \[-1, 1\].*from 2 to 2"),  # out of range (0..255 floats would be too)
        (good.clone().fill_(float("nan")), r"floats in \[-1, 1\]"),
        (good.long(), "uint8 in \\[0, 255\\] or floats in \\[-1, 1\\], got dtype torch.int64"),
        (torch.zeros(2, 3, 2, 64), r"at least 4x4 pixels.*got \(2, 64\)"),
        ([[0.0]], r"\(B, 3, H, W\).*got list"),
    ]
    for images, message in cases:
        for score in (stripe_energy, power_spectrum):
            with pytest.raises(ValueError, match=message):
                score(images)


def test_the_variants_differ_only_in_their_position_encoding():
    comparison = COMPARISONS["rope_artifacts"]
    assert list(comparison.variants) == ["rope_axial", "rope_mixed"]
    models = {name: build() for name, build in comparison.variants.items()}
    configs = {name: asdict(m.config) for name, m in models.items()}
    differ = {k for k in configs["rope_axial"] if configs["rope_axial"][k] != configs["rope_mixed"][k]}
    assert differ == {"pos"} and configs["rope_mixed"]["pos"] == "rope_mixed"
    assert configs["rope_axial"]["input_size"] == 8  # trained on 8x8 latents (32 px), as lesson 05's section 6
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    assert params["rope_mixed"] - params["rope_axial"] == models["rope_mixed"].rope.freqs.numel()
    assert comparison.key == ("stripe_ratio", "rope_axial", "rope_mixed")
    assert comparison.run == LESSON_RUN and comparison.data == ("train", "val") and not comparison.train_sizes
    assert comparison.probes == ("rope_artifacts",) and comparison.modes == ()


def test_the_verdict_calls_more_stripe_energy_in_the_axial_samples_the_claim_reproduced():
    def result(axial, mixed):
        variants = {name: {"seeds": [0, 1, 2], "metrics": {"stripe_ratio": values}}
                    for name, values in (("rope_axial", axial), ("rope_mixed", mixed))}
        return {"key": ["stripe_ratio", "rope_axial", "rope_mixed"], "budget": {"n_eval": 10}, "variants": variants}

    assert verdict(result([1.6, 1.5, 1.7], [1.1, 1.0, 1.15])) == "reproduced"
    assert verdict(result([1.1, 1.0, 1.15], [1.6, 1.5, 1.7])) == "not reproduced"
    assert verdict(result([1.6, 1.0, 1.3], [1.1, 1.5, 1.3])) == "inconclusive"


def test_the_lesson_scale_fits_lesson_05_and_the_reference_follows_the_protocol():
    comparison = COMPARISONS["rope_artifacts"]
    lesson, reference, fast = comparison.lesson, comparison.reference, comparison.fast
    runs = len(comparison.variants) * len(lesson.seeds)
    seconds = runs * (lesson.steps * lesson.batch_size / 64 * STEP_SECONDS + lesson.n_eval * SAMPLE_SECONDS)
    assert seconds <= LESSON_SECONDS, f"the lesson-scale run takes about {seconds / 60:.1f} minutes"
    assert len(lesson.seeds) >= 2 and lesson.batch_size == 64 and lesson.n_eval >= 100
    assert reference.steps >= 2.5 * lesson.steps and len(reference.seeds) >= 3 and reference.n_eval >= lesson.n_eval
    assert set(lesson.seeds) <= set(reference.seeds)
    assert fast.steps * fast.batch_size <= 12 * 32 and fast.n_eval <= 16  # FAST mode: a smoke test


def _fake_generate(images, calls):
    def generate(model, captions, vae, steps, cfg_scale, seed, latent_size, sampler):
        calls.append({"captions": captions, "cfg_scale": cfg_scale, "seed": seed, "latent_size": latent_size})
        return images
    return generate


def test_the_probe_samples_64_px_and_scores_them_against_real_64_px_images(monkeypatch):
    """With a 'model' whose samples are real images of its captions the ratio is about 1; with the same images made
    into stripes (each row replaced by its mean) it is several times that."""
    from course_utils.checkpoint import load_model

    judge, n, seed = load_model("judge"), 60, 1
    drawn = render_shapes(n, seed=SEEDS["eval_prompts"] + seed, size=ARTIFACT_SIZE, mode="single")
    calls = []
    monkeypatch.setattr(metrics, "generate", _fake_generate(drawn.images.float() / 127.5 - 1, calls))
    context = {"vae": None, "judge": judge, "n_eval": n, "seed": seed}
    out = PROBES["rope_artifacts"](LATENT_MODEL, context)
    assert calls[0]["captions"] == drawn.captions and calls[0]["latent_size"] == ARTIFACT_SIZE // 4 == 16
    assert calls[0]["cfg_scale"] == ARTIFACT_CFG and calls[0]["seed"] == seed
    real = render_shapes(n, seed=SEEDS["eval_real"] + seed, size=ARTIFACT_SIZE, mode="single").images
    assert out["stripe_energy_real"] == pytest.approx(_reference_share(real.float() / 127.5 - 1).mean(), rel=1e-6)
    assert out["stripe_ratio"] == pytest.approx(out["stripe_energy"] / out["stripe_energy_real"])
    assert 0.85 < out["stripe_ratio"] < 1.15 and out["adherence_64"] >= 0.9
    stripes = (drawn.images.float() / 127.5 - 1).mean(-1, keepdim=True).expand(-1, -1, -1, ARTIFACT_SIZE)
    monkeypatch.setattr(metrics, "generate", _fake_generate(stripes.contiguous(), calls))
    striped = PROBES["rope_artifacts"](LATENT_MODEL, context)
    assert striped["stripe_energy"] == pytest.approx(1.0) and striped["stripe_ratio"] > 3
    assert striped["stripe_energy_real"] == out["stripe_energy_real"]
    assert striped["frechet_64"] > out["frechet_64"]
    assert out["off_axis"] == out["off_axis_weighted"] == 0.0  # no learned directions: counted as on the axes


def test_the_probe_reads_how_far_a_mixed_models_directions_point_from_the_axes(monkeypatch):
    """Heads set at 0, 30, 45 and 60 degrees in every layer: 26.25 degrees off axis on average; with the 0-degree
    head's vectors three times as long, the length-weighted mean is (3 * 0 + 30 + 45 + 30) / 6 = 17.5."""
    model = COMPARISONS["rope_artifacts"].variants["rope_mixed"]()
    heads = mixed_frequencies(32, 4, directions=torch.deg2rad(torch.tensor([0.0, 30.0, 45.0, 60.0])))  # (4, 16, 2)
    with torch.no_grad():
        model.rope.freqs.copy_(heads.expand_as(model.rope.freqs))
        model.rope.freqs[:, 0] *= 3
    images = render_shapes(8, seed=0, size=ARTIFACT_SIZE, mode="single").images.float() / 127.5 - 1
    monkeypatch.setattr(metrics, "generate", _fake_generate(images, []))
    from course_utils.checkpoint import load_model

    out = PROBES["rope_artifacts"](model, {"vae": None, "judge": load_model("judge"), "n_eval": 8, "seed": 0})
    assert out["off_axis"] == pytest.approx(26.25, abs=1e-4)
    assert out["off_axis_weighted"] == pytest.approx(17.5, abs=1e-4)


def test_a_tiny_run_samples_real_64_px_images_and_gives_a_valid_result(monkeypatch):
    """The whole path, unpatched except for a spy on the sampler and a tiny budget: two variants x two seeds."""
    shapes = []
    real_generate = metrics.generate

    def spy(*args, **kwargs):
        images = real_generate(*args, **kwargs)
        shapes.append(tuple(images.shape))
        return images

    monkeypatch.setattr(metrics, "generate", spy)
    monkeypatch.setitem(comparisons.COMPARISONS, "rope_artifacts", replace(COMPARISONS["rope_artifacts"], fast=TINY))
    result = run_comparison("rope_artifacts", "fast", device="cpu")
    check_result(result)
    assert result["complete"] and shapes == [(4, 3, 64, 64)] * 4
    for entry in result["variants"].values():
        m = entry["metrics"]
        assert set(m) >= {"val_loss", "stripe_ratio", "stripe_energy", "stripe_energy_real", "adherence_64",
                          "frechet_64", "params"}
        assert all(0 <= e <= 1 for e in m["stripe_energy"]) and all(r >= 0 for r in m["stripe_ratio"])
    assert difference(result).n == 2 and result["budget"]["cfg_scale"] == ARTIFACT_CFG
