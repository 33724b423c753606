import json
from dataclasses import replace

import pytest
import torch
from test_results import fake_result

from course_utils import comparisons, experiments
from course_utils.comparisons import COMPARISONS, Scale, get_comparison, scale_of
from course_utils.config import SEEDS
from course_utils.experiments import run_comparison, run_variant
from course_utils.results import difference, load_result, same_runs

TINY = Scale(steps=3, seeds=(0,), batch_size=8, n_eval=4, n_val=16)


def test_unknown_comparisons_variants_and_scales_are_refused_by_name():
    with pytest.raises(ValueError, match="unknown comparison 'conditionning'.*conditioning"):
        get_comparison("conditionning")
    with pytest.raises(ValueError, match="has the variants in_context, cross_attention, adaln, adaln_zero"):
        run_comparison("conditioning", "fast", variants=["adaLN"])
    with pytest.raises(ValueError, match="scale must be one of"):
        scale_of(COMPARISONS["conditioning"], "huge")
    with pytest.raises(ValueError, match="variant 'c' is not in this result"):
        difference(fake_result([1, 1, 1], [1, 1, 1]), "val_loss", "a", "c")


def test_the_reference_scale_follows_the_protocol():
    for comparison in COMPARISONS.values():
        lesson, reference = comparison.lesson, comparison.reference
        assert reference.steps >= 2.5 * lesson.steps and len(reference.seeds) >= 3, comparison.name
        assert len(lesson.seeds) >= 2 and comparison.key[1] in comparison.variants
        assert comparison.key[2] in comparison.variants


def test_a_cpu_reference_states_its_own_budget():
    note = experiments.cpu_reference_note(COMPARISONS["scaling"])
    assert note == "CPU-only reference: 5x the lesson's steps, 5 seeds"
    shorter = replace(COMPARISONS["scaling"], reference=replace(COMPARISONS["scaling"].reference, steps=1000))
    assert experiments.cpu_reference_note(shorter) == (
        "CPU-only reference: 2.5x the lesson's steps, 5 seeds (below the 5x that DESIGN asks)")


@pytest.mark.parametrize("name", sorted(COMPARISONS))
def test_each_shipped_reference_ran_at_its_comparisons_reference_budget(name):
    """A reference a notebook quotes is the one its comparison defines now: same steps, seeds, data, training and
    probes, every variant at every seed, and a budget note that says so (a budget changed without a rerun fails)."""
    comparison, shipped = COMPARISONS[name], load_result(name)
    lent = experiments.lenders(comparison, "reference")
    expected = experiments.budget_record(comparison, "reference", shipped["device"], lent)  # a CPU run's has a note
    assert shipped["complete"] and same_runs(shipped["budget"], expected)
    assert shipped["budget"]["seeds"] == expected["seeds"] and shipped["budget"].get("note") == expected.get("note")
    seeds = {variant: entry["seeds"] for variant, entry in shipped["variants"].items()}
    assert seeds == {variant: expected["seeds"] for variant in comparison.variants}


def test_a_run_keeps_each_finished_seed_and_resumes_without_repeating_it(tmp_path, monkeypatch):
    calls = []

    def fake_run(comparison, variant, seed, scale, data, device=None, keep=None):
        calls.append((variant, seed))
        return {"val_loss": 1.0 + seed + (variant == "adaln"), "seconds": 1.0}

    monkeypatch.setattr(experiments, "run_variant", fake_run)
    monkeypatch.setattr(experiments, "_load_data", lambda comparison, device: {})
    progress = tmp_path / "progress.json"
    partial = run_comparison("conditioning", "fast", variants=["adaln", "adaln_zero"], progress=progress)
    assert calls == [("adaln", 0), ("adaln", 1), ("adaln_zero", 0), ("adaln_zero", 1)] and partial["complete"]
    kept = json.loads(progress.read_text())
    kept["variants"]["adaln_zero"] = {"seeds": [0], "metrics": {"val_loss": [1.0], "seconds": [1.0]}}  # cut off
    progress.write_text(json.dumps(kept))
    calls.clear()
    resumed = run_comparison("conditioning", "fast", variants=["adaln", "adaln_zero"], progress=progress)
    assert calls == [("adaln_zero", 1)]
    assert resumed["variants"] == partial["variants"]


def _fake_runs(monkeypatch, calls):
    def fake_run(comparison, variant, seed, scale, data, device=None, keep=None):
        calls.append((comparison.name, variant, seed))
        return {"pair_consistency": 0.1 * seed + 0.5 * (variant == "unet"), "seconds": 1.0 + seed}

    monkeypatch.setattr(experiments, "run_variant", fake_run)
    monkeypatch.setattr(experiments, "_load_data", lambda comparison, device: {})


def test_processes_running_different_variants_and_seeds_share_one_progress_file(tmp_path, monkeypatch):
    """Each save merges what the file holds: three 'processes' that each run a part of one comparison leave the
    whole of it, each variant's seeds in order, and a last run finds nothing left to train."""
    calls = []
    _fake_runs(monkeypatch, calls)
    progress = tmp_path / "progress.json"
    with pytest.raises(ValueError, match=r"the fast scale of 'long_range' runs the seeds \[0, 1\]; got \[2\]"):
        run_comparison("long_range", "fast", progress=progress, seeds=[2])
    first = run_comparison("long_range", "fast", variants=["dit"], progress=progress, seeds=[1])
    assert list(first["variants"]) == ["dit"]
    run_comparison("long_range", "fast", variants=["unet"], progress=progress)
    run_comparison("long_range", "fast", variants=["dit"], progress=progress, seeds=[0])
    assert calls == [("long_range", "dit", 1), ("long_range", "unet", 0), ("long_range", "unet", 1),
                     ("long_range", "dit", 0)]
    kept = json.loads(progress.read_text())
    assert kept["variants"]["dit"] == {"seeds": [0, 1], "metrics": {"pair_consistency": [0.0, 0.1],
                                                                    "seconds": [1.0, 2.0]}}
    assert kept["seconds"] == 6.0
    calls.clear()
    whole = run_comparison("long_range", "fast", progress=progress)
    assert calls == [] and whole["complete"] and difference(whole).mean == pytest.approx(-0.5)
    assert list(whole["variants"]) == ["unet", "dit"]  # the comparison's order, whichever process finished first


def test_a_budget_grown_by_seeds_resumes_the_seeds_run_alike_and_nothing_else(tmp_path, monkeypatch):
    """Going from 3 seeds to 5 keeps the 3: a kept seed counts if it ran alike (same steps, data, training...) and
    the budget runs it; a kept run that differs in anything else is trained again."""
    calls = []
    _fake_runs(monkeypatch, calls)
    progress = tmp_path / "progress.json"
    run_comparison("long_range", "fast", progress=progress)
    kept = json.loads(progress.read_text())
    for entry in kept["variants"].values():  # as if an earlier budget ran seeds 0 and 7 (7 is not run now)
        entry["seeds"] = [0, 7]
    kept["budget"].update(seeds=[0, 7], note="an older budget's note")
    progress.write_text(json.dumps(kept))
    calls.clear()
    grown = run_comparison("long_range", "fast", progress=progress)
    assert calls == [("long_range", "unet", 1), ("long_range", "dit", 1)]
    assert grown["complete"] and grown["variants"]["unet"]["seeds"] == [0, 1] and grown["budget"]["seeds"] == [0, 1]
    kept["budget"]["steps"] += 1  # not run alike: nothing is kept
    progress.write_text(json.dumps(kept))
    calls.clear()
    run_comparison("long_range", "fast", progress=progress)
    assert [seed for _, _, seed in calls] == [0, 1, 0, 1]


def test_downsampling_borrows_long_ranges_u_net_runs_where_they_were_run_at_its_budget(tmp_path, monkeypatch):
    calls = []
    _fake_runs(monkeypatch, calls)
    monkeypatch.setattr(experiments, "REPO_DIR", tmp_path)  # progress files under tmp_path/runs/experiments
    downsampling, long_range = COMPARISONS["downsampling"], COMPARISONS["long_range"]
    assert comparisons.lends(long_range, downsampling, "unet", "reference")
    assert not comparisons.lends(long_range, downsampling, "unet", "lesson")  # 500 steps against 300
    assert not comparisons.lends(long_range, downsampling, "dit", "reference")  # not one of its variants
    run_comparison("long_range", "fast", variants=["unet"], progress=experiments.progress_path("long_range", "fast"))
    calls.clear()
    result = run_comparison("downsampling", "fast")
    assert calls == [("downsampling", "no_downsampling", 0), ("downsampling", "no_downsampling", 1)]
    assert result["budget"]["borrowed"] == {"unet": "long_range"}
    assert result["variants"]["unet"]["metrics"]["pair_consistency"] == [0.5, 0.6]
    calls.clear()
    kept = {}  # a model is asked for (as a notebook asks): nothing can be borrowed, the U-Net trains
    run_comparison("downsampling", "fast", keep=kept)
    assert [variant for _, variant, _ in calls] == ["unet", "unet", "no_downsampling", "no_downsampling"]
    calls.clear()
    assert "borrowed" not in run_comparison("downsampling", "lesson", variants=["unet"])["budget"]
    assert calls[0][1] == "unet"


def test_one_variant_run_is_deterministic_and_measures_every_metric():
    from course_utils.experiments import _load_data

    comparison = COMPARISONS["conditioning"]
    data = _load_data(comparison, "cpu")
    kept = {}
    first = run_variant(comparison, "adaln", 0, TINY, data, "cpu", keep=kept)
    assert list(kept) == [("adaln", 0)] and not kept["adaln", 0].training
    second = run_variant(comparison, "adaln", 0, TINY, data, "cpu")
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    assert set(first) == {"val_loss", "curve", "params", "gflops", "adherence_single", "frechet_single",
                          "adherence_two", "frechet_two"}
    assert first["curve"][-1] == [3, first["val_loss"]] and 0 <= first["adherence_two"] <= 1


def test_conditioning_long_trains_conditionings_runs_on_and_its_curves_begin_as_that_reference_ended():
    """Lesson 04 reads conditioning_long as the same runs trained twice as long: same builders, data, training,
    modes, guidance and seeds, and a validation curve equal to conditioning's, value for value, up to 2,000 steps."""
    short, long = COMPARISONS["conditioning"], COMPARISONS["conditioning_long"]
    assert set(long.variants) < set(short.variants) and long.run.lr_decay == "constant"
    assert long.reference == replace(short.reference, steps=2 * short.reference.steps)
    at_short_budget = replace(long, reference=short.reference)  # all but the steps: what a borrower must share
    assert all(comparisons.lends(short, at_short_budget, v, "reference") for v in long.variants)
    shipped_short, shipped_long = load_result("conditioning"), load_result("conditioning_long")
    for variant in long.variants:
        assert shipped_short["variants"][variant]["seeds"] == shipped_long["variants"][variant]["seeds"]
        for before, after in zip(shipped_short["variants"][variant]["metrics"]["curve"],
                                 shipped_long["variants"][variant]["metrics"]["curve"], strict=True):
            after = dict(map(tuple, after))
            shared = [[step, loss] for step, loss in before if step in after]
            assert len(shared) == 4 and all(after[step] == loss for step, loss in shared), variant


def test_long_range_pits_a_unet_without_attention_against_a_dit_of_matched_size_and_compute():
    comparison = COMPARISONS["long_range"]
    models = {name: build() for name, build in comparison.variants.items()}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    gflops = {name: m.forward_gflops() for name, m in models.items()}
    assert 0.8 <= params["dit"] / params["unet"] <= 1.2 and 0.8 <= gflops["dit"] / gflops["unet"] <= 1.2
    assert not any(isinstance(m, torch.nn.MultiheadAttention) or type(m).__name__ == "AttentionBlock"
                   for m in models["unet"].modules())
    assert models["unet"].config.input_size == models["dit"].config.input_size == 16  # 64 px images
    assert comparison.run.cfg_dropout == 1.0 and comparison.data == ("twins64_train", "twins64_val")


def test_the_downsampling_control_sees_less_than_two_cells_at_the_u_nets_compute():
    """The control never downsamples and its chain of 3x3 convolutions reaches 6 latent pixels to each side, less
    than the 10.7 between objects two grid cells apart (a cell is 16 / 3 latent pixels); its U-Net is long_range's."""
    comparison, long_range = COMPARISONS["downsampling"], COMPARISONS["long_range"]
    unet, control = (comparison.variants[name]() for name in ("unet", "no_downsampling"))
    assert unet.config == long_range.variants["unet"]().config and len(control.config.channels) == 1
    convs = [m for m in control.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.stride == (1, 1) for m in convs)  # no downsampling anywhere
    reach = sum((m.kernel_size[0] - 1) // 2 for m in convs)  # each 3x3 convolution adds a pixel to each side
    assert reach == 6 and reach < 2 * 16 / 3
    assert 0.9 <= control.forward_gflops() / unet.forward_gflops() <= 1.1
    for field_name in ("run", "data", "probes", "reference", "cfg_scale", "modes"):
        assert getattr(comparison, field_name) == getattr(long_range, field_name), field_name


def test_the_twins_probe_counts_pairs_by_distance_on_unconditional_samples(monkeypatch):
    """The probe reads what the judge finds: with a 'model' whose samples are real twins it counts every pair as
    consistent, at the distances the scenes put them."""
    from course_utils.checkpoint import load_model
    from course_utils.data import render_shapes
    from course_utils.metrics import CELL_DISTANCES

    real = render_shapes(40, seed=SEEDS["tests"] + 40, size=64, mode="twins")
    captions = []
    monkeypatch.setattr(comparisons, "generate", lambda model, caps, vae, seed: captions.extend(caps) or real.images)
    context = {"vae": None, "judge": load_model("judge"), "n_eval": 40, "seed": 0}
    out = comparisons.PROBES["twins_by_distance"](None, context)
    assert captions == [""] * 40  # the null caption: unconditional samples
    expected = {label: 0 for label in CELL_DISTANCES.values()}
    for record in real.records:
        a, b = record["objects"]
        expected[CELL_DISTANCES[(a["row"] - b["row"]) ** 2 + (a["col"] - b["col"]) ** 2]] += 1
    assert {label: out[f"found_{label}"] for label in expected} == expected
    assert out["pair_consistency"] == out["two_objects"] == 1.0
