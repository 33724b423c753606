import json

import pytest

from course_utils import checkpoint, experiments
from course_utils.experiments import (
    COMPARISONS,
    Scale,
    check_result,
    difference,
    get_comparison,
    load_result,
    run_comparison,
    run_variant,
    save_result,
    scale_of,
    summarize,
    table,
    verdict,
)

TINY = Scale(steps=3, seeds=(0,), batch_size=8, n_eval=4, n_val=16)


def fake_result(a_losses, b_losses, seeds=(0, 1, 2)):
    variants = {name: {"seeds": list(seeds), "metrics": {"val_loss": list(losses),
                                                        "adherence_single": [0.5] * len(seeds)}}
                for name, losses in (("a", a_losses), ("b", b_losses))}
    return {"name": "toy", "claim": "a beats b", "key": ["val_loss", "a", "b"], "command": "", "commit": "",
            "device": "cpu", "seconds": 0.0, "complete": True, "budget": {"n_eval": 10}, "variants": variants}


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


def test_difference_and_verdict_read_the_paired_interval():
    better = fake_result([0.60, 0.70, 0.65], [0.62, 0.72, 0.68])  # a lower on every seed
    d = difference(better)
    assert abs(d.mean - (-0.07 / 3)) < 1e-12 and d.high < 0
    assert verdict(better) == "reproduced"
    assert verdict(fake_result([0.62, 0.72, 0.68], [0.60, 0.70, 0.65])) == "not reproduced"
    assert verdict(fake_result([0.60, 0.72, 0.65], [0.62, 0.70, 0.65])) == "inconclusive"
    assert verdict(better, "adherence_single", "a", "b") == "inconclusive"  # equal adherence
    assert "a" in table(better) and "[" in table(better)


def test_summarize_gives_adherence_the_binomial_interval_over_all_prompts():
    result = fake_result([0.6, 0.7, 0.65], [0.6, 0.7, 0.65])
    adherence = summarize(result, "adherence_single")["a"]
    assert adherence.n == 30 and adherence.mean == 0.5  # 3 seeds x 10 prompts
    assert summarize(result, "val_loss")["a"].n == 3
    with pytest.raises(ValueError, match="metric 'frechet' was not measured"):
        summarize(result, "frechet")


def test_the_schema_round_trips_and_a_broken_result_is_named(tmp_path):
    result = fake_result([0.6, 0.7, 0.65], [0.6, 0.7, 0.65])
    save_result(result, tmp_path / "toy.json")
    assert check_result(json.loads((tmp_path / "toy.json").read_text())) == result
    result["variants"]["b"]["metrics"]["val_loss"].pop()
    with pytest.raises(ValueError, match="variant 'b' has 3 seeds but not as many values of \\['val_loss'\\]"):
        check_result(result)
    with pytest.raises(ValueError, match="lacks claim"):
        check_result({k: v for k, v in result.items() if k != "claim"})


def test_load_result_verifies_the_checksum(tmp_path, monkeypatch):
    monkeypatch.setattr(experiments, "DATA_DIR", tmp_path)
    monkeypatch.setattr(checkpoint, "DATA_DIR", tmp_path)
    monkeypatch.setattr(checkpoint, "SUMS_FILE", tmp_path / "SHA256SUMS")
    with pytest.raises(FileNotFoundError, match="no shipped result results/toy.json"):
        load_result("toy")
    save_result(fake_result([0.6, 0.7, 0.65], [0.6, 0.7, 0.65]), tmp_path / "results" / "toy.json")
    checkpoint.register_shipped("results/toy.json")
    assert load_result("toy")["name"] == "toy"
    path = tmp_path / "results" / "toy.json"
    path.write_text(path.read_text().replace("a beats b", "b beats a"))
    with pytest.raises(ValueError, match="does not match its sha256"):
        load_result("toy")


def test_a_run_keeps_each_finished_seed_and_resumes_without_repeating_it(tmp_path, monkeypatch):
    calls = []

    def fake_run(comparison, variant, seed, scale, data, device=None):
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
    first = run_variant(comparison, "adaln", 0, TINY, data, "cpu")
    second = run_variant(comparison, "adaln", 0, TINY, data, "cpu")
    first.pop("seconds"), second.pop("seconds")
    assert first == second
    assert set(first) == {"val_loss", "curve", "params", "gflops", "adherence_single", "frechet_single",
                          "adherence_two", "frechet_two"}
    assert first["curve"][-1] == [3, first["val_loss"]] and 0 <= first["adherence_two"] <= 1
