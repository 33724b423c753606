import json

import pytest
from test_results import fake_result

from course_utils import experiments
from course_utils.experiments import COMPARISONS, Scale, get_comparison, run_comparison, run_variant, scale_of
from course_utils.results import difference

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


def test_a_run_keeps_each_finished_seed_and_resumes_without_repeating_it(tmp_path, monkeypatch):
    calls = []

    def fake_run(comparison, variant, seed, scale, data, device=None, keep=None):
        calls.append((variant, seed))
        return {"val_loss": 1.0 + seed + (variant == "adaln"), "seconds": 1.0}

    monkeypatch.setattr(experiments, "run_variant", fake_run)
    monkeypatch.setattr(experiments, "_load_data", lambda device: {})
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


def test_one_variant_run_is_deterministic_and_measures_every_metric():
    from course_utils.experiments import _load_data

    data = _load_data("cpu")
    comparison = COMPARISONS["conditioning"]
    kept = {}
    first = run_variant(comparison, "adaln", 0, TINY, data, "cpu", keep=kept)
    assert list(kept) == [("adaln", 0)] and not kept["adaln", 0].training
    second = run_variant(comparison, "adaln", 0, TINY, data, "cpu")
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    assert set(first) == {"val_loss", "curve", "params", "gflops", "adherence_single", "frechet_single",
                          "adherence_two", "frechet_two"}
    assert first["curve"][-1] == [3, first["val_loss"]] and 0 <= first["adherence_two"] <= 1
