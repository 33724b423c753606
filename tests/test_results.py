import json
import subprocess

import pytest

from course_utils import checkpoint, results
from course_utils.results import (
    check_result,
    curve_difference,
    difference,
    load_result,
    save_result,
    summarize,
    table,
    verdict,
)


def fake_result(a_losses, b_losses, seeds=(0, 1, 2)):
    variants = {name: {"seeds": list(seeds), "metrics": {"val_loss": list(losses),
                                                        "adherence_single": [0.5] * len(seeds)}}
                for name, losses in (("a", a_losses), ("b", b_losses))}
    return {"name": "toy", "claim": "a beats b", "key": ["val_loss", "a", "b"], "command": "", "commit": "",
            "device": "cpu", "seconds": 0.0, "complete": True, "budget": {"n_eval": 10}, "variants": variants}


def test_difference_and_verdict_read_the_paired_interval():
    better = fake_result([0.60, 0.70, 0.65], [0.62, 0.72, 0.68])  # a lower on every seed
    d = difference(better)
    assert abs(d.mean - (-0.07 / 3)) < 1e-12 and d.high < 0
    assert verdict(better) == "reproduced"
    assert verdict(fake_result([0.62, 0.72, 0.68], [0.60, 0.70, 0.65])) == "not reproduced"
    assert verdict(fake_result([0.60, 0.72, 0.65], [0.62, 0.70, 0.65])) == "inconclusive"
    assert verdict(better, "adherence_single", "a", "b") == "inconclusive"  # equal adherence
    assert "a" in table(better) and "[" in table(better)


def test_curve_difference_pairs_each_validation_step_by_seed_and_ends_at_the_final_difference():
    result = fake_result([0.60, 0.70], [0.62, 0.75], seeds=(0, 1))
    result["variants"]["a"]["metrics"]["curve"] = [[[10, 0.9], [20, 0.60]], [[10, 0.8], [20, 0.70]]]
    result["variants"]["b"]["metrics"]["curve"] = [[[10, 1.0], [20, 0.62]], [[10, 0.9], [20, 0.75]]]
    gaps = curve_difference(result)
    assert list(gaps) == [10, 20] and abs(gaps[10].mean + 0.1) < 1e-12 and gaps[10].n == 2
    assert gaps[20].mean == difference(result).mean and gaps[20].low == difference(result).low
    b = result["variants"]["b"]  # the same runs, stored in another seed order: paired by seed, not by position
    b["seeds"], b["metrics"]["val_loss"], b["metrics"]["curve"] = [1, 0], [0.75, 0.62], b["metrics"]["curve"][::-1]
    assert curve_difference(result)[20].low == gaps[20].low and curve_difference(result)[10].low == gaps[10].low
    with pytest.raises(ValueError, match="variant 'c' is not in this result"):
        curve_difference(result, "c", "b")


def test_summarize_gives_adherence_the_binomial_interval_over_all_prompts():
    result = fake_result([0.6, 0.7, 0.65], [0.6, 0.7, 0.65])
    adherence = summarize(result, "adherence_single")["a"]
    assert adherence.n == 30 and adherence.mean == 0.5  # 3 seeds x 10 prompts
    assert summarize(result, "val_loss")["a"].n == 3
    with pytest.raises(ValueError, match="metric 'frechet' was not measured"):
        summarize(result, "frechet")


def test_consistency_by_distance_pools_the_pairs_found_over_seeds():
    result = fake_result([0.6, 0.7, 0.65], [0.6, 0.7, 0.65])
    result["variants"]["a"]["metrics"].update(consistent_1=[3, 1, 0], found_1=[4, 2, 4], consistent_2=[0, 0, 0],
                                              found_2=[0, 0, 0])
    result["variants"]["b"]["metrics"].update(consistent_1=[0, 0, 1], found_1=[1, 1, 1], consistent_2=[2, 2, 2],
                                              found_2=[2, 3, 5])
    rows = results.by_distance(result)
    assert list(rows["a"]) == ["1"]  # no pair found 2 cells apart: no row rather than 0 of 0
    a1, b2 = rows["a"]["1"], rows["b"]["2"]
    assert (a1.n, a1.mean) == (10, 0.4) and (b2.n, b2.mean) == (10, 0.6)
    # the Wilson interval of 4 in 10, computed here: (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
    z, n, phat = 1.959964, 10, 0.4
    centre, half = phat + z * z / (2 * n), z * (phat * (1 - phat) / n + z * z / (4 * n * n)) ** 0.5
    assert a1.low == pytest.approx((centre - half) / (1 + z * z / n), abs=1e-5)
    assert a1.high == pytest.approx((centre + half) / (1 + z * z / n), abs=1e-5)
    with pytest.raises(ValueError, match="variant 'a' has no counts by distance"):
        results.by_distance(fake_result([0.6, 0.7, 0.65], [0.6, 0.7, 0.65]))


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
    monkeypatch.setattr(results, "DATA_DIR", tmp_path)
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


def test_the_readme_states_each_shipped_claims_status_as_its_result_gives_it():
    import re

    from course_utils.comparisons import COMPARISONS
    from course_utils.config import REPO_DIR

    readme = (REPO_DIR / "README.md").read_text()
    section = readme.split("## The lecture's claims, measured")[1].split("\n## ")[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\|[^|]*\|[^|]*\| `(\w+)` \| \*\*([a-z ]+)\*\* \|", section,
                                                         re.MULTILINE)}
    assert set(COMPARISONS) <= set(rows), "one README row per comparison"
    for name, status in rows.items():
        if (REPO_DIR / "data" / "results" / f"{name}.json").exists():
            assert status == verdict(load_result(name)), name
        else:  # a claim with no experiment yet, or one not yet run at reference scale
            assert status == "open", name


def test_git_commit_is_the_checkouts_and_outside_one_the_environments(tmp_path, monkeypatch):
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=results.REPO_DIR).stdout.strip()
    monkeypatch.setenv("COURSE_COMMIT", "abc1234")
    assert results.git_commit() == head and len(head) >= 7
    monkeypatch.setattr(results, "REPO_DIR", tmp_path)  # a copy of the working tree without .git
    assert results.git_commit() == "abc1234"
    monkeypatch.delenv("COURSE_COMMIT")
    assert results.git_commit() == "unknown"
