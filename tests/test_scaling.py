"""The scaling comparison (DiT paper, section 5): a grid of 3 sizes x patches 4, 2, 1 that differ only as named, at one
budget; and the analysis that reads it (power law against Gflops, paired patch contrasts), checked on synthetic results
against independent computations."""

import math
from dataclasses import asdict

import matplotlib
import numpy as np
import pytest
import torch

from course_utils.comparisons import COMPARISONS
from course_utils.dit import DIT_TINY, DiT
from course_utils.experiments import run_comparison
from course_utils.results import check_result, difference, summarize
from course_utils.scaling import (
    SCALING_LESSON,
    SCALING_PATCHES,
    SCALING_SIZES,
    fit_against,
    grid_points,
    parse_variant,
    patch_contrasts,
    plot_models,
    plot_scaling,
    power_law_fit,
    scaling_variants,
    trend,
)
from course_utils.stats import t_quantile
from course_utils.train import LESSON_RUN

matplotlib.use("Agg")
SCALING = COMPARISONS["scaling"]
NAMED = ("dim", "depth", "heads", "patch_size")  # what a variant's name sets (heads follow the width)


@pytest.fixture(scope="module")
def models():
    return {name: build() for name, build in SCALING.variants.items()}


def test_the_grid_is_three_sizes_by_patches_4_2_1_and_nothing_else_differs(models):
    assert list(SCALING.variants) == [f"{s}_p{p}" for s in SCALING_SIZES for p in (4, 2, 1)]
    assert len(SCALING_SIZES) >= 3 and SCALING_PATCHES == (4, 2, 1)
    base = {k: v for k, v in asdict(DIT_TINY).items() if k not in NAMED}
    assert base["conditioning"] == "adaln_zero" and base["pos"] == "absolute" and base["input_size"] == 8
    widths, depths = set(), set()
    for name, model in models.items():
        config = asdict(model.config)
        assert isinstance(model, DiT) and {k: v for k, v in config.items() if k not in NAMED} == base, name
        w, d, p = (int(x) for x in name.replace("w", "").replace("d", " ").replace("_p", " ").split())
        assert (config["dim"], config["depth"], config["patch_size"]) == (w, d, p), name
        assert config["dim"] // config["heads"] == 32  # the same head width at every size
        widths.add(w)
        depths.add(d)
    assert len(widths) == len(depths) == 3  # the sizes grow in width and in depth


def test_patches_4_2_1_give_4_16_and_64_tokens(models):
    x = torch.zeros(1, 4, 8, 8)
    for name, model in models.items():
        tokens, _ = model.embed_patches(x)
        assert tokens.shape[1] == {4: 4, 2: 16, 1: 64}[parse_variant(name)[1]], name


def test_a_smaller_patch_buys_gflops_at_nearly_the_same_parameters(models):
    params = {n: sum(q.numel() for q in m.parameters()) for n, m in models.items()}
    for size in SCALING_SIZES:
        gflops = [models[f"{size}_p{p}"].forward_gflops() for p in (4, 2, 1)]
        blocks = [models[f"{size}_p{p}"].gflops() for p in (4, 2, 1)]
        assert gflops[0] < gflops[1] < gflops[2] and blocks[0] < blocks[1] < blocks[2], size
        assert blocks[2] / blocks[0] > 12  # 16x the tokens (the token-free modulation dilutes it a little)
        counts = [params[f"{size}_p{p}"] for p in (4, 2, 1)]
        assert counts[0] > counts[1] > counts[2] and counts[2] / counts[0] > 0.95  # slightly fewer, as in the paper
    for p in (4, 2, 1):  # at one patch, the bigger size has more of both
        ordered = [models[f"{size}_p{p}"] for size in SCALING_SIZES]
        assert all(a.forward_gflops() < b.forward_gflops() for a, b in zip(ordered, ordered[1:]))
        assert all(params[f"{a}_p{p}"] < params[f"{b}_p{p}"] for a, b in zip(SCALING_SIZES, list(SCALING_SIZES)[1:]))


def test_every_variant_shares_one_budget_and_the_scales_follow_the_protocol():
    assert SCALING.run == LESSON_RUN and SCALING.modes == ("single",)
    lesson, reference = SCALING.lesson, SCALING.reference
    assert len(lesson.seeds) >= 2 and len(reference.seeds) >= 3
    assert reference.steps >= 5 * lesson.steps and reference.batch_size == lesson.batch_size
    assert reference.n_eval >= lesson.n_eval
    metric, a, b = SCALING.key
    assert metric == "val_loss" and parse_variant(a) == ("w96d3", 1) and parse_variant(b) == ("w96d3", 4)
    assert set(SCALING_LESSON) <= set(SCALING.variants) and {a, b} <= set(SCALING_LESSON)
    assert {parse_variant(v)[0] for v in SCALING_LESSON} == set(SCALING_SIZES)  # every size in the live run
    assert {parse_variant(v)[1] for v in SCALING_LESSON} == {4, 2, 1}  # and every patch
    assert not SCALING.train_sizes and SCALING.data == ("train", "val")


def synthetic(values: dict, gflops: dict, params: dict = None, seeds=(0, 1)) -> dict:
    """A result in the schema: per variant one value of frechet_single per seed, its Gflops and parameters."""
    params = params or {v: 1e6 for v in values}
    variants = {v: {"seeds": list(seeds), "metrics": {"frechet_single": list(vals), "gflops": [gflops[v]] * len(seeds),
                                                      "params": [params[v]] * len(seeds)}}
                for v, vals in values.items()}
    return {"name": "scaling", "claim": "", "key": ["frechet_single", "w96d3_p1", "w96d3_p4"], "command": "",
            "commit": "", "device": "cpu", "seconds": 0.0, "complete": True, "budget": {"n_eval": 10},
            "variants": variants}


# Gflops like the grid's: each size 4x per halving of the patch, the sizes apart
GFLOPS = {f"{s}_p{p}": base * 4**j for s, base in zip(SCALING_SIZES, (0.0005, 0.0015, 0.0035))
          for j, p in enumerate((4, 2, 1))}


def test_an_exact_power_law_is_recovered_with_correlation_minus_one():
    law = {v: 3.0 * g**-0.5 for v, g in GFLOPS.items()}
    fit = fit_against(synthetic({v: [y, y] for v, y in law.items()}, GFLOPS), "frechet_single")
    assert math.isclose(fit.exponent, -0.5, abs_tol=1e-12) and math.isclose(fit.prefactor, 3.0, rel_tol=1e-12)
    assert math.isclose(fit.r, -1.0, abs_tol=1e-12) and fit.n == 9
    assert fit.high - fit.low < 1e-9  # no residual, no width
    assert math.isclose(fit.predict(0.04), 3.0 * 0.04**-0.5, rel_tol=1e-12)


def test_a_noisy_fit_matches_numpys_least_squares_and_its_slope_interval():
    gen = np.random.default_rng(0)
    x = np.geomspace(1e-3, 1e-1, 9)
    y = 50 * x**-0.3 * np.exp(gen.normal(0, 0.2, 9))
    fit = power_law_fit(x.tolist(), y.tolist())
    (slope, intercept), cov = np.polyfit(np.log(x), np.log(y), 1, cov="unscaled")
    residual = np.sum((np.log(y) - (slope * np.log(x) + intercept)) ** 2)
    se = math.sqrt(cov[0, 0] * residual / (9 - 2))
    assert math.isclose(fit.exponent, slope, rel_tol=1e-9) and math.isclose(fit.prefactor, math.exp(intercept),
                                                                            rel_tol=1e-9)
    assert math.isclose(fit.r, np.corrcoef(np.log(x), np.log(y))[0, 1], rel_tol=1e-9)
    assert math.isclose(fit.high - fit.exponent, t_quantile(7) * se, rel_tol=1e-6)
    assert fit.low < -0.3 < fit.high
    assert trend(fit) == "falls" and trend(power_law_fit(x.tolist(), (1 / y).tolist())) == "rises"
    assert trend(power_law_fit([1, 2, 3, 4], [1.0, 2.0, 0.5, 1.0])) == "inconclusive"


def test_gflops_not_parameters_predict_quality_when_quality_depends_on_gflops_only():
    params = {v: {"w64d2": 0.23e6, "w96d3": 0.63e6, "w128d4": 1.37e6}[parse_variant(v)[0]] for v in GFLOPS}
    result = synthetic({v: [10 * g**-0.4] * 2 for v, g in GFLOPS.items()}, GFLOPS, params)
    assert math.isclose(fit_against(result, "frechet_single").r, -1.0, abs_tol=1e-12)
    assert abs(fit_against(result, "frechet_single", against="params").r) < 0.9


def test_patch_contrasts_pair_the_seeds_of_one_size():
    values = {"w96d3_p4": [10.0, 20.0], "w96d3_p2": [8.0, 15.0], "w96d3_p1": [7.0, 11.0], "w64d2_p2": [30.0, 31.0]}
    result = synthetic(values, {v: GFLOPS[v] for v in values})
    result["variants"]["w96d3_p1"]["seeds"] = [1, 0]  # seed order differs: pairing goes by seed, not position
    contrasts = patch_contrasts(result, "frechet_single")
    assert set(contrasts) == {("w96d3", 1, 4), ("w96d3", 2, 4), ("w96d3", 1, 2)}  # w64d2 has a single patch here
    assert math.isclose(contrasts[("w96d3", 1, 4)].mean, ((11 - 10) + (7 - 20)) / 2)
    assert math.isclose(contrasts[("w96d3", 2, 4)].mean, -3.5) and contrasts[("w96d3", 2, 4)].n == 2
    points = {p.variant: p for p in grid_points(result, "frechet_single")}
    assert points["w96d3_p2"].patch == 2 and points["w96d3_p2"].size == "w96d3"
    assert points["w96d3_p2"].value == summarize(result, "frechet_single")["w96d3_p2"]


def test_wrong_input_is_refused_by_name():
    with pytest.raises(ValueError, match="positive finite numbers"):
        power_law_fit([1, 2, 3], [1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="at least 3 points"):
        power_law_fit([1, 2], [1, 2])
    with pytest.raises(ValueError, match="must pair up, got 3 and 2"):
        power_law_fit([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="every x is the same"):
        power_law_fit([2, 2, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="named SIZE_pPATCH .* got 'unet'"):
        grid_points(synthetic({"unet": [1.0, 2.0]}, {"unet": 0.1}), "frechet_single")
    result = synthetic({v: [1.0, 2.0] for v in GFLOPS}, GFLOPS)
    with pytest.raises(ValueError, match="has no val_loss; measured: frechet_single, gflops, params"):
        fit_against(result, "val_loss")
    with pytest.raises(ValueError, match="against must be 'gflops' or 'params'"):
        fit_against(result, "frechet_single", against="tokens")
    with pytest.raises(ValueError, match="at least one variant"):
        grid_points({"variants": {}}, "frechet_single")


def test_the_plot_draws_one_line_per_size_and_the_fit():
    result = synthetic({v: [3 * g**-0.5, 3.1 * g**-0.5] for v, g in GFLOPS.items()}, GFLOPS)
    ax = plot_scaling(result, "frechet_single")
    labels = ax.get_legend_handles_labels()[1]
    assert sorted(label.split()[0] for label in labels if not label.startswith("fit")) == sorted(SCALING_SIZES)
    assert [label for label in labels if label.startswith("fit: exponent -0.50, r = -1.00")]
    assert ax.get_xscale() == "log" and "lower is better" in ax.get_ylabel()


def test_the_recap_chart_draws_one_bubble_per_model_sized_by_parameters():
    from course_utils.stats import wilson_interval

    models = {"A": {"params": 2e6, "gflops": 0.02, "adherence": wilson_interval(180, 200), "frechet": 3.0},
              "B": {"params": 3e6, "gflops": 0.03, "adherence": wilson_interval(150, 200), "frechet": 5.0}}
    ax = plot_models(models)
    sizes = [c.get_sizes()[0] for c in ax.collections if hasattr(c, "get_sizes") and len(c.get_sizes())]
    assert sizes == [400, 600] and "n=200" in ax.get_ylabel()
    assert [t.get_text().split("\n")[0] for t in ax.texts] == ["A", "B"] and "Frechet 5.0" in ax.texts[1].get_text()


def test_a_fast_run_of_two_variants_is_a_valid_result_with_params_and_gflops():
    result = run_comparison("scaling", "fast", variants=["w64d2_p4", "w64d2_p1"], device="cpu")
    check_result(result)
    assert result["complete"] and list(result["variants"]) == ["w64d2_p4", "w64d2_p1"]
    assert result["budget"]["steps"] == SCALING.fast.steps and result["budget"]["cfg_scale"] == 2.0
    metrics = result["variants"]["w64d2_p1"]["metrics"]
    assert set(metrics) >= {"val_loss", "adherence_single", "frechet_single", "params", "gflops", "curve"}
    gflops = {v: e["metrics"]["gflops"][0] for v, e in result["variants"].items()}
    assert gflops["w64d2_p1"] > 8 * gflops["w64d2_p4"]
    assert patch_contrasts(result, "val_loss")[("w64d2", 1, 4)] == difference(result, "val_loss", "w64d2_p1",
                                                                               "w64d2_p4")
    assert scaling_variants().keys() == SCALING.variants.keys()
