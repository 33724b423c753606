"""Reading a comparison's result (the results schema of DESIGN, "Evidence: two scales"): load and check it, summarize
each metric with its 95% interval, the paired difference of two variants (at the end and along the runs), the
claim's verdict, and text tables.

A result: {"name", "claim", "key": [metric, a, b], "command", "commit", "device", "seconds", "complete",
"budget": {...}, "variants": {VARIANT: {"seeds": [...], "metrics": {METRIC: [one value per seed], "curve": ...}}}}.
"""

import json
import os
import subprocess
from pathlib import Path

from .checkpoint import register_shipped, sha256_file, shipped_sums, write_atomic
from .config import DATA_DIR, REPO_DIR
from .stats import mean_interval, paired_difference, pooled_proportion, wilson_interval

# over prompts, so they get the binomial interval too
PROPORTIONS = ("adherence_single", "adherence_two", "adherence_pair", "adherence_64", "pair_consistency",
               "two_objects", "colours_right", "shapes_right", "bound", "follows_b")
LOWER_IS_BETTER = ("val_loss", "frechet_single", "frechet_two", "frechet_pair", "frechet_64", "low_freq_error",
                   "high_freq_error")


SCHEMA = ("name", "claim", "key", "command", "commit", "device", "seconds", "complete", "budget", "variants")


def git_commit() -> str:
    """The checkout's short commit hash, recorded in every result; outside a git checkout (a copy of the working
    tree on a GPU machine, say) env COURSE_COMMIT, else "unknown"."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_DIR)
    return done.stdout.strip() or os.environ.get("COURSE_COMMIT", "unknown")


def new_result(name: str, claim: str, key: tuple, command: str, device, budget: dict, variants: dict = None) -> dict:
    """A result in the schema, started now at this commit: no time spent yet and not complete."""
    return {"name": name, "claim": claim, "key": list(key), "command": command, "commit": git_commit(),
            "device": str(device), "seconds": 0.0, "complete": False, "budget": budget, "variants": variants or {}}


def record_seed(result: dict, variant: str, seed: int, measured: dict, progress=None) -> None:
    """Add one (variant, seed)'s measurements (with their "seconds") to a result being run, and save it to the
    `progress` file if one is given, so that a cut-off run resumes after this seed.

    Saving first takes in the (variant, seed)s that the file holds and the result lacks (`take_kept`): two
    processes that run different variants (or seeds) of one comparison can share a progress file."""
    _add_seed(result, variant, seed, measured)
    if progress is not None:
        if Path(progress).exists():
            take_kept(result, json.loads(Path(progress).read_text()))
        save_result(result, progress)


def same_runs(budget: dict, other: dict) -> bool:
    """Whether two budgets train and measure each seed alike: equal but for which seeds they run (and the note that
    counts them). A seed run under one is then valid under the other: a budget can grow from 3 seeds to 5."""
    def runs(b):
        return {k: v for k, v in b.items() if k not in ("seeds", "note")}
    return runs(budget) == runs(other)


def take_kept(result: dict, kept: dict) -> None:
    """Add to a result being run the (variant, seed)s that a kept one (a progress file) holds and it lacks, if they
    ran alike (`same_runs`) and the result's budget runs that seed."""
    if not same_runs(kept.get("budget", {}), result["budget"]):
        return
    for name, entry in kept["variants"].items():
        for i, seed in enumerate(entry["seeds"]):
            if seed in result["budget"]["seeds"] and seed not in result["variants"].get(name, {"seeds": ()})["seeds"]:
                _add_seed(result, name, seed, {m: v[i] for m, v in entry["metrics"].items()})


def _add_seed(result: dict, variant: str, seed: int, measured: dict) -> None:
    """Insert one (variant, seed) into a result, keeping each variant's seeds (and metric lists) in seed order."""
    entry = result["variants"].setdefault(variant, {"seeds": [], "metrics": {}})
    at = sum(other < seed for other in entry["seeds"])
    entry["seeds"].insert(at, seed)
    for metric, value in measured.items():
        entry["metrics"].setdefault(metric, []).insert(at, value)
    result["seconds"] += measured["seconds"]


def save_result(result: dict, path) -> None:
    """Write a result as JSON, atomically (an interrupted write leaves the old file)."""
    text = json.dumps(result, indent=1)
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def ship_result(result: dict) -> str:
    """Write a reference result to data/results/NAME.json and list its sha256 in data/SHA256SUMS; returns what was
    written, as a line to print."""
    file = f"results/{result['name']}.json"
    save_result(result, DATA_DIR / file)
    return f"wrote data/{file}, sha256 {register_shipped(file)}"


def check_result(result: dict, source="result") -> dict:
    """A result in the results schema: the top-level keys, and per variant one value per seed for every metric."""
    missing = [k for k in SCHEMA if k not in result] if isinstance(result, dict) else list(SCHEMA)
    if missing:
        raise ValueError(f"{source} is not a comparison result: it lacks {', '.join(missing)}.")
    for variant, entry in result["variants"].items():
        n = len(entry["seeds"])
        wrong = [m for m, values in entry["metrics"].items() if len(values) != n]
        if wrong:
            raise ValueError(f"{source}: variant {variant!r} has {n} seeds but not as many values of {wrong}.")
    return result


def load_result(name: str) -> dict:
    """The shipped reference result data/results/NAME.json, verified against data/SHA256SUMS."""
    file = f"results/{name}.json"
    path = DATA_DIR / file
    expected = shipped_sums().get(file)
    if expected is None or not path.exists():
        raise FileNotFoundError(f"no shipped result {file}; run `python -m course_utils.experiments {name} --scale "
                                "reference`, or restore data/ with `git checkout -- data/`.")
    if sha256_file(path) != expected:
        raise ValueError(f"{path} does not match its sha256 in data/SHA256SUMS; restore it with "
                         f"`git checkout -- data/{file} data/SHA256SUMS`.")
    return check_result(json.loads(path.read_text()), path)


def summarize(result: dict, metric: str) -> dict:
    """{variant: Interval} of one metric over seeds (t interval); for adherence and pair consistency the Wilson
    interval over all the prompts of all the seeds (`budget.n_eval` per seed)."""
    out = {}
    for variant, entry in result["variants"].items():
        if metric not in entry["metrics"]:
            raise ValueError(f"metric {metric!r} was not measured; measured: {', '.join(entry['metrics'])}.")
        values = entry["metrics"][metric]
        if metric in PROPORTIONS:
            out[variant] = pooled_proportion(values, result["budget"]["n_eval"])
        else:
            out[variant] = mean_interval(values)
    return out


def by_distance(result: dict) -> dict:
    """Pair consistency by the distance between the two objects, from the twins probe's counts: {variant: {distance
    label (metrics.CELL_DISTANCES): Interval}}, the Wilson interval of the matching pairs among all the pairs found
    that far apart, pooled over seeds (n: the pairs found). Distances at which no pair was found are left out."""
    out = {}
    for variant, entry in result["variants"].items():
        m = entry["metrics"]
        labels = [name[len("found_"):] for name in m if name.startswith("found_")]
        if not labels:
            raise ValueError(f"variant {variant!r} has no counts by distance (the twins probe); measured: "
                             f"{', '.join(m)}.")
        found = {label: int(sum(m[f"found_{label}"])) for label in labels}
        out[variant] = {label: wilson_interval(int(sum(m[f"consistent_{label}"])), found[label])
                        for label in labels if found[label]}
    return out


def _by_shared_seed(result: dict, metric: str, a: str, b: str) -> tuple:
    """The metric's per-seed values of variants a and b (default: the key's), over the seeds both ran, in one order."""
    _, key_a, key_b = result["key"]
    a, b = a or key_a, b or key_b
    for v in (a, b):
        if v not in result["variants"]:
            raise ValueError(f"variant {v!r} is not in this result; it has {', '.join(result['variants'])}.")
    va, vb = (result["variants"][v] for v in (a, b))
    shared = [s for s in va["seeds"] if s in vb["seeds"]]
    return tuple([entry["metrics"][metric][entry["seeds"].index(s)] for s in shared] for entry in (va, vb))


def difference(result: dict, metric: str = None, a: str = None, b: str = None):
    """The paired difference a - b of a metric over the shared seeds, with its 95% t interval (default: the key)."""
    return paired_difference(*_by_shared_seed(result, metric or result["key"][0], a, b))


def curve_difference(result: dict, a: str = None, b: str = None) -> dict:
    """{step: the paired difference a - b of the validation loss at that step of the runs, over the shared seeds,
    with its 95% t interval} (default: the key's variants); at the last step it is `difference`'s final loss."""
    curves_a, curves_b = ([dict(map(tuple, curve)) for curve in curves]
                          for curves in _by_shared_seed(result, "curve", a, b))  # [{step: val loss}] per seed
    return {step: paired_difference([c[step] for c in curves_a], [c[step] for c in curves_b]) for step in curves_a[0]}


def verdict(result: dict, metric: str = None, a: str = None, b: str = None) -> str:
    """"reproduced", "not reproduced" (the interval excludes zero on the other side) or "inconclusive" for the claim
    that a is better than b on the metric (lower for losses and distances, higher otherwise)."""
    metric = metric or result["key"][0]
    d = difference(result, metric, a, b)
    if not d.excludes_zero():
        return "inconclusive"
    better = d.mean < 0 if metric in LOWER_IS_BETTER else d.mean > 0
    return "reproduced" if better else "not reproduced"


def describe(result: dict) -> str:
    """One line: the budget, seeds, prompts, device and time of a result."""
    b = result["budget"]
    return (f"{b['scale']} scale: {b['steps']} steps of batch {b['batch_size']} for each of the seeds {b['seeds']}, "
            f"{b['n_eval']} prompts per mode and seed, {result['device']}, {result['seconds'] / 60:.1f} min")


def table(result: dict, metrics=("val_loss", "adherence_single", "adherence_two", "params", "gflops")) -> str:
    """A text table: one row per variant, each metric as mean [95% interval]."""
    metrics = [m for m in metrics if m in next(iter(result["variants"].values()))["metrics"]]
    columns = {m: summarize(result, m) for m in metrics}
    lines = [f"{'variant':>16} | " + " | ".join(f"{m:>24}" for m in metrics)]
    for variant in result["variants"]:
        cells = []
        for m in metrics:
            i = columns[m][variant]
            cells.append(f"{i.mean / 1e6:>22.2f} M" if m == "params" else
                         f"{i.mean:>8.1%} [{i.low:.1%}, {i.high:.1%}]" if m in PROPORTIONS else
                         f"{i.mean:>8.4f} [{i.low:.4f}, {i.high:.4f}]")
        lines.append(f"{variant:>16} | " + " | ".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)
