"""Controlled comparisons, repeated over seeds, at two scales (DESIGN, "Evidence: two scales"): running them.

A comparison trains named variants that differ in the one thing a lesson studies, each on the same seeds, data and
budget, and measures per (variant, seed): the validation-loss curve and final value, prompt adherence on single- and
two-object captions, pair consistency where asked, the Frechet distance, parameters, Gflops and seconds. What is
compared (variants, claims, budgets, probes) is defined in `course_utils.comparisons`.

    run_comparison("conditioning")               # lesson scale, live in notebook 04 (tiny in FAST mode)
    python -m course_utils.experiments conditioning --scale reference   # -> data/results/conditioning.json

A reference run keeps each finished (variant, seed) in runs/experiments/ as it goes and resumes there, so a run
longer than one sitting loses nothing; once complete it is written to data/results/ and listed in data/SHA256SUMS.
Processes may run different variants or seeds of one comparison side by side (`--variants`, `--seeds`): they share
that file. A variant that a comparison borrows (Comparison.borrows) is taken from the lender's result where that
holds the seed, instead of being trained again.
`course_utils.results` reads a result (95% intervals, paired differences, verdicts); `viz.plot_comparison` draws it.
"""

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

from .checkpoint import load_model
from .comparisons import COMPARISONS, PROBES, SCALES, Comparison, Scale, get_comparison, lends, scale_of
from .config import DATA_DIR, REPO_DIR, get_device, seed_everything
from .latents import load_latents
from .metrics import evaluate
from .results import difference, load_result, new_result, record_seed, same_runs, ship_result, table, take_kept, verdict
from .train import train

# A reference run on the CPU records its budget as a multiple of the lesson's steps (cpu_reference_note), and says so
# where it is below the 5x that DESIGN asks.
MODE_SUFFIX = {"single": "single", "relation": "two", "pair": "pair"}  # evaluate's caption mode -> metric suffix


def run_variant(comparison: Comparison, variant: str, seed: int, scale: Scale, data: dict, device=None,
                keep: dict = None) -> dict:
    """Train one variant with one seed and measure it: {metric: value, "curve": [[step, val_loss], ...]}.
    keep: a dict that receives the trained model under (variant, seed), in eval mode (to sample from it)."""
    device = device or get_device()
    n = comparison.train_sizes.get(variant, len(data["latents"]))
    if n > len(data["latents"]):
        raise ValueError(f"variant {variant!r} trains on the first {n:,} latents, but only {len(data['latents']):,} "
                         "were given; its train_sizes entry must be at most that.")
    latents, cond = data["latents"][:n], tuple(c[:n] for c in data["cond"])  # the first n of the split
    seed_everything(seed)
    model = comparison.variants[variant]().to(device)
    config = replace(comparison.run, steps=scale.steps, batch_size=scale.batch_size, seed=seed,
                     val_every=-(-scale.steps // 8))
    start = time.time()
    val_latents, (val_ids, val_mask) = data["val"]
    val = (val_latents[: scale.n_val], (val_ids[: scale.n_val], val_mask[: scale.n_val]))
    history = train(model, latents, cond, config=config, val=val,
                    desc=f"{comparison.name}: {variant}, seed {seed}")
    out = {"val_loss": history.final_val_loss(), "curve": [[s, v] for s, v in history.val_loss],
           "params": sum(p.numel() for p in model.parameters()), "gflops": model.forward_gflops()}
    model.eval()
    context = {"val": val, "vae": data["vae"], "judge": data["judge"], "n_eval": scale.n_eval, "seed": seed}
    for probe in comparison.probes:
        out.update(PROBES[probe](model, context))
    for mode in comparison.modes:
        result = evaluate(model, n=scale.n_eval, mode=mode, cfg_scale=comparison.cfg_scale, seed=seed,
                          vae=data["vae"], judge=data["judge"])
        suffix = MODE_SUFFIX[mode]
        out[f"adherence_{suffix}"], out[f"frechet_{suffix}"] = result["adherence"], result["frechet"]
        if mode == "pair":
            out["pair_consistency"] = result["pair_consistency"]
    out["seconds"] = time.time() - start
    if keep is not None:
        keep[(variant, seed)] = model
    return out


def _load_data(comparison: Comparison, device) -> dict:
    train_set, val_set = (load_latents(split, verbose=False) for split in comparison.data)
    return {"latents": train_set.latents, "cond": (train_set.ids, train_set.mask),
            "val": (val_set.latents, (val_set.ids, val_set.mask)),
            "vae": load_model("vae", device), "judge": load_model("judge", device)}


def progress_path(name: str, scale: str) -> Path:
    """Where a run of a comparison at a scale keeps its finished (variant, seed)s: runs/experiments/NAME-SCALE.json."""
    return REPO_DIR / "runs" / "experiments" / f"{name}-{scale}.json"


def lenders(comparison: Comparison, scale: str) -> dict:
    """{variant: lender name} for the variants whose runs at this scale are another comparison's (see `lends`)."""
    return {variant: lender for variant, lender in comparison.borrows.items()
            if lends(get_comparison(lender), comparison, variant, scale)}


def borrowed(lender: str, variant: str, scale: str, device) -> dict:
    """{seed: measurements} of a variant from the lender's progress file or, at reference scale, its shipped result,
    for the seeds they ran as the lender runs them now (`results.same_runs`; the progress file first)."""
    comparison = get_comparison(lender)
    budget = budget_record(comparison, scale, device, lenders(comparison, scale))
    found = []
    if scale == "reference" and (DATA_DIR / "results" / f"{lender}.json").exists():
        found.append(load_result(lender))
    if progress_path(lender, scale).exists():
        found.append(json.loads(progress_path(lender, scale).read_text()))
    seeds = {}
    for result in found:  # a later one overrides an earlier one
        entry = result["variants"].get(variant, {"seeds": [], "metrics": {}})
        if same_runs(result["budget"], budget):
            seeds.update({seed: {metric: values[i] for metric, values in entry["metrics"].items()}
                          for i, seed in enumerate(entry["seeds"])})
    return seeds


def budget_record(comparison: Comparison, scale: str, device, lent: dict) -> dict:
    """What a result records of its budget at a scale: steps, seeds, batch, prompts, guidance, sampler, training
    settings, the comparison's notes, the variants borrowed (`lent`) and, for a CPU reference, `cpu_reference_note`."""
    budget = scale_of(comparison, scale)
    train = {k: v for k, v in asdict(comparison.run).items() if k not in ("steps", "batch_size", "seed")}
    return {**asdict(budget), "seeds": list(budget.seeds), "scale": scale, "cfg_scale": comparison.cfg_scale,
            "sampler": "Euler, 25 steps", "train": train,
            **comparison.notes,
            **({"train_sizes": comparison.train_sizes} if comparison.train_sizes else {}),
            **({"borrowed": lent} if lent else {}),
            **({"note": cpu_reference_note(comparison)} if scale == "reference" and str(device) == "cpu" else {})}


def cpu_reference_note(comparison: Comparison) -> str:
    """What a reference run on the CPU says of its budget: its steps as a multiple of the lesson's, and its seeds."""
    ratio = comparison.reference.steps / comparison.lesson.steps
    short = " (below the 5x that DESIGN asks)" if ratio < 5 else ""
    return f"CPU-only reference: {ratio:g}x the lesson's steps, {len(comparison.reference.seeds)} seeds{short}"


def run_comparison(name: str, scale: str = "lesson", variants=None, progress: Path = None, device=None,
                   keep: dict = None, seeds=None) -> dict:
    """Run every (variant, seed) of a comparison at a scale; returns the result in the results schema (DESIGN).

    variants: a subset of the variant names (default all); seeds: a subset of the budget's seeds (default all).
    progress: a JSON file that keeps each finished (variant, seed) and is resumed from, if its seeds ran alike
    (`results.same_runs`: the budget may since have grown more seeds).
    keep: a dict that receives each model trained here under (variant, seed).
    """
    comparison = get_comparison(name)
    budget = scale_of(comparison, scale)
    variants = list(comparison.variants) if variants is None else list(variants)
    unknown = [v for v in variants if v not in comparison.variants]
    if unknown or not variants:
        raise ValueError(f"comparison {name!r} has the variants {', '.join(comparison.variants)}; got {variants!r}.")
    seeds = list(budget.seeds) if seeds is None else list(seeds)
    if not seeds or any(seed not in budget.seeds for seed in seeds):
        raise ValueError(f"the {scale} scale of {name!r} runs the seeds {list(budget.seeds)}; got {seeds!r}.")
    device = device or get_device()
    lent = lenders(comparison, scale) if keep is None else {}  # a model asked for must be trained here
    command = f"python -m course_utils.experiments {name} --scale {scale}"
    result = new_result(name, comparison.claim, comparison.key, command, device,
                        budget_record(comparison, scale, device, lent))
    if progress is not None and Path(progress).exists():
        take_kept(result, json.loads(Path(progress).read_text()))
    data = None
    for variant in variants:
        entry = result["variants"].setdefault(variant, {"seeds": [], "metrics": {}})
        taken = borrowed(lent[variant], variant, scale, device) if variant in lent else {}
        for seed in seeds:
            if seed in entry["seeds"]:
                continue
            if seed in taken:
                measured = taken[seed]
            else:
                data = data or _load_data(comparison, device)
                measured = run_variant(comparison, variant, seed, budget, data, device, keep)
            record_seed(result, variant, seed, measured, progress)
    result["variants"] = {v: result["variants"][v] for v in comparison.variants if v in result["variants"]}
    result["complete"] = all(result["variants"][v]["seeds"] == list(budget.seeds) for v in variants)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m course_utils.experiments", description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=sorted(COMPARISONS))
    parser.add_argument("--scale", choices=SCALES, default="reference")
    parser.add_argument("--variants", help="comma-separated subset of the variants (default: all)")
    parser.add_argument("--seeds", help="comma-separated subset of the scale's seeds (default: all)")
    args = parser.parse_args(argv)
    comparison = get_comparison(args.name)
    variants = args.variants.split(",") if args.variants else None
    progress = progress_path(args.name, args.scale)
    seeds = [int(seed) for seed in args.seeds.split(",")] if args.seeds else None
    result = run_comparison(args.name, args.scale, variants, progress, seeds=seeds)
    print(table(result))
    if all(v in result["variants"] for v in comparison.key[1:]):
        key = difference(result)
        print(f"{comparison.key[1]} - {comparison.key[2]} ({comparison.key[0]}): {key}; {verdict(result)}")
    if args.scale == "reference" and result["complete"] and variants is None and seeds is None:
        print(ship_result(result))
    else:
        print(f"kept in {progress} (data/ is written only by a complete reference run of every variant)")


if __name__ == "__main__":
    main()
