"""The one command that rebuilds a file the course ships in data/:

    python -m course_utils.retrain NAME [--steps N] [--seed S] [--out DIR] [--install [--force]]

NAME is vae, judge, unet, dit or mmdit. A run writes NAME.pt and report.json into --out (default: a new folder
under runs/, git-ignored) and never touches data/ unless --install is given. --install replaces data/NAME.pt and
its line in data/SHA256SUMS (both atomically) only after the new model passes its checks: at least one step, a
finite validation loss (a finite PSNR / accuracy for the VAE and the judge), and for the denoisers a single-object
adherence on 500 held-out captions (CFG 2) not below the shipped model's by more than two standard errors
(--force skips that last check and says so).

The denoisers share one recipe (RECIPES): caption-conditional flow matching on the train latents with the
SHIPPED_RUN settings, 10% null captions for classifier-free guidance, an EMA of the weights, saved in float16.
The MMDiT draws two-object (relation) scenes 2.5x as often and decays its lr along a cosine (MMDIT_RUN), since
binding colours to shapes in two-object captions is learned late.
"""

import argparse
import json
import math
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from .checkpoint import SHIPPED, load_model, register_shipped, save_model
from .config import DATA_DIR, REPO_DIR, get_device
from .dit import dit_small
from .judge import attribute_accuracy, train_judge
from .latents import load_latents, mode_sample_weights
from .metrics import evaluate
from .mmdit import mmdit_small
from .train import MMDIT_RUN, SHIPPED_RUN, TrainConfig, train
from .unet import unet_small
from .vae import reconstruction_psnr, train_vae


@dataclass(frozen=True)
class Recipe:
    """How a shipped denoiser is trained: its builder, its run, and per-mode drawing weights of the scenes."""

    build: object
    run: TrainConfig
    mode_weights: dict = field(default_factory=dict)


RECIPES = {
    "unet": Recipe(unet_small, SHIPPED_RUN),
    "dit": Recipe(dit_small, replace(SHIPPED_RUN, steps=12_000)),
    "mmdit": Recipe(mmdit_small, MMDIT_RUN, {"relation": 2.5}),
}
DEFAULT_STEPS = {"vae": 3000, "judge": 3000, **{name: recipe.run.steps for name, recipe in RECIPES.items()}}


def train_denoiser(name: str, steps: int, seed: int = 0, callback=None):
    """Train a shipped denoiser's architecture with its recipe; returns (EMA model on the CPU, History)."""
    recipe = RECIPES[name]
    torch.manual_seed(seed)
    model = recipe.build().to(get_device())
    data, val = load_latents("train"), load_latents("val")
    weights = mode_sample_weights(data.scenes, recipe.mode_weights) if recipe.mode_weights else None
    history = train(model, data.latents, (data.ids, data.mask), config=replace(recipe.run, steps=steps, seed=seed),
                    val=(val.latents[:1000], (val.ids[:1000], val.mask[:1000])), sample_weights=weights,
                    callback=callback, desc=name)
    return history.ema.cpu(), history


def adherence_check(candidate, shipped, n: int = 500) -> dict:
    """Single-object adherence (CFG 2, 500 held-out captions) of both models, and whether the candidate is not
    below the shipped one by more than two standard errors of their difference."""
    a, b = (evaluate(m, n=n, cfg_scale=2.0)["adherence"] for m in (candidate, shipped))
    se = math.sqrt(max(a * (1 - a) + b * (1 - b), 1e-12) / n)
    return {"candidate": a, "shipped": b, "two_se": 2 * se, "passed": a >= b - 2 * se}


def run(name: str, steps: int, seed: int, out: Path) -> dict:
    """Train NAME into out/NAME.pt; returns the report (what was measured, and whether the checks passed)."""
    start = time.time()
    report = {"name": name, "steps": steps, "seed": seed}
    if name == "vae":
        model = train_vae(steps=steps, seed=seed)
        report["psnr_32"] = reconstruction_psnr(model, size=32)
        report["checks"] = {"finite": math.isfinite(report["psnr_32"])}
        half = False
    elif name == "judge":
        model = train_judge(steps=steps, seed=seed)
        report["accuracy_32"] = attribute_accuracy(model, size=32)
        report["checks"] = {"finite": all(math.isfinite(v) for v in report["accuracy_32"].values())}
        half = False
    else:
        model, history = train_denoiser(name, steps, seed)
        report["val_loss"] = history.final_val_loss()
        report["checks"] = {"finite": math.isfinite(report["val_loss"])}
        half = True
    report["checks"]["trained"] = steps >= 1
    report["seconds"] = round(time.time() - start, 1)
    report["sha256"] = save_model(out / SHIPPED[name][0], model, step=steps, half=half)
    return report, model


def main(argv=None):
    parser = argparse.ArgumentParser(description="Retrain a file the course ships in data/.")
    parser.add_argument("name", choices=list(SHIPPED))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the shipped run's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: a new folder under runs/)")
    parser.add_argument("--install", action="store_true", help="replace data/NAME.pt if the new model passes")
    parser.add_argument("--force", action="store_true", help="with --install: skip the adherence comparison")
    args = parser.parse_args(argv)
    steps = DEFAULT_STEPS[args.name] if args.steps is None else args.steps
    if steps < 1:
        parser.error(f"--steps must be at least 1, got {steps}.")
    out = args.out or REPO_DIR / "runs" / f"{args.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    report, model = run(args.name, steps, args.seed, out)
    if args.install and args.name in RECIPES:
        if args.force:
            print("--force: the adherence comparison with the shipped model is skipped.")
        else:
            report["adherence"] = adherence_check(model, load_model(args.name))
            report["checks"]["adherence"] = report["adherence"]["passed"]
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    if args.install:
        failed = [check for check, ok in report["checks"].items() if not ok]
        if failed:
            raise SystemExit(f"not installed: the new {args.name} failed the check(s) {failed}; it stays in {out}.")
        file = SHIPPED[args.name][0]
        tmp = DATA_DIR / f".{file}.new"
        shutil.copyfile(out / file, tmp)
        tmp.replace(DATA_DIR / file)
        print(f"installed data/{file} (sha256 {register_shipped(file)})")


if __name__ == "__main__":
    main()
