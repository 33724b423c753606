"""More solver steps, better samples: the `sampling_steps` experiment (lesson 00's Euler update; Heun's method at
equal function evaluations).

One shipped denoiser samples the same held-out captions with Euler at 1 to 64 steps and with Heun (two model calls a
step) at the same numbers of function evaluations (NFE). Each prompt set (seed) is scored by the judge: adherence and
the Frechet distance per setting. The result has the results schema, one "variant" per setting, so
`course_utils.results` reads it like a comparison (paired over prompt sets):

    python -m course_utils.solvers --scale reference      # -> data/results/sampling_steps.json
"""

import argparse
import time
from dataclasses import asdict

from .checkpoint import load_model
from .comparisons import Scale
from .config import FAST, get_device
from .metrics import evaluate
from .results import difference, new_result, ship_result, table, verdict

NFES = (1, 2, 4, 8, 16, 32, 64)  # model calls per sample
SETTINGS = {**{f"euler_{n}": ("euler", n) for n in NFES},  # name -> (sampler, steps)
            **{f"heun_{n}": ("heun", n // 2) for n in NFES if n >= 2}}
SCALES = {"fast": Scale(steps=0, seeds=(0,), n_eval=16), "lesson": Scale(steps=0, seeds=(0, 1), n_eval=200),
          "reference": Scale(steps=0, seeds=(0, 1, 2), n_eval=500)}
MODEL, CFG_SCALE = "unet", 2.0  # lesson 02's shipped U-Net, at the CFG scale the lessons sample with
CLAIM = ("More solver steps give better samples: with 32 Euler steps the samples lie closer to real images (a lower "
         "Frechet distance) than with 4 (lesson 00's Euler update; adherence and Frechet distance against function "
         "evaluations, Heun alongside).")
KEY = ("frechet_single", "euler_32", "euler_4")


def run_sampling_steps(scale: str = "lesson", settings=None, model=None, device=None) -> dict:
    """Sample the shipped MODEL with every setting (default all of SETTINGS) on each prompt set of the scale; returns
    the result in the results schema: per setting and seed "nfe", "adherence_single", "frechet_single", "seconds"."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {tuple(SCALES)}, got {scale!r}.")
    budget = SCALES["fast" if scale == "lesson" and FAST else scale]
    settings = list(SETTINGS) if settings is None else list(settings)
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown or not settings:
        raise ValueError(f"the settings are {', '.join(SETTINGS)}; got {settings!r}.")
    device = device or get_device()
    model = model or load_model(MODEL, device)
    vae, judge = load_model("vae", device), load_model("judge", device)
    result = new_result("sampling_steps", CLAIM, KEY, f"python -m course_utils.solvers --scale {scale}", device,
                        {**asdict(budget), "seeds": list(budget.seeds), "scale": scale, "model": MODEL,
                         "cfg_scale": CFG_SCALE, "note": "no training: a shipped model, one prompt set per seed"})
    for name in settings:
        sampler, steps = SETTINGS[name]
        entry = result["variants"][name] = {"seeds": [], "metrics": {}}
        for seed in budget.seeds:
            start = time.time()
            scored = evaluate(model, n=budget.n_eval, steps=steps, cfg_scale=CFG_SCALE, seed=seed, vae=vae,
                              judge=judge, sampler=sampler)
            measured = {"nfe": steps * (2 if sampler == "heun" else 1), "adherence_single": scored["adherence"],
                        "frechet_single": scored["frechet"], "seconds": time.time() - start}
            entry["seeds"].append(seed)
            for metric, value in measured.items():
                entry["metrics"].setdefault(metric, []).append(value)
            result["seconds"] += measured["seconds"]
    result["complete"] = True
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m course_utils.solvers", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=tuple(SCALES), default="reference")
    args = parser.parse_args(argv)
    result = run_sampling_steps(args.scale)
    print(table(result, ("nfe", "adherence_single", "frechet_single")))
    print(f"{KEY[1]} - {KEY[2]} ({KEY[0]}): {difference(result)}; {verdict(result)}")
    if args.scale == "reference":
        print(ship_result(result))


if __name__ == "__main__":
    main()
