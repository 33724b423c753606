"""The one command that rebuilds a file the course ships in data/:

    python -m course_utils.retrain NAME [--steps N] [--seed S] [--batch-size B] [--lr LR] [--compile] [--gpu-recipe]
                                        [--out DIR] [--resume DIR] [--install [--force]]

NAME is vae, judge, unet, dit or mmdit. A run writes NAME.pt and report.json into --out (default: a new folder
under runs/, git-ignored) and never touches data/ unless --install is given. --install replaces data/NAME.pt and
its line in data/SHA256SUMS (both atomically) only after the new model passes its checks: at least one step, a
finite validation loss (a finite PSNR / accuracy for the VAE and the judge), and for the denoisers a single-object
adherence on 500 held-out captions (CFG 2) not below the shipped model's by more than two standard errors
(--force skips that last check and says so).

The denoisers share one recipe (RECIPES): caption-conditional flow matching on the train latents with the
SHIPPED_RUN settings, 10% null captions for classifier-free guidance, an EMA of the weights, saved in float16.
The MMDiT draws two-object (relation) scenes 2.5x as often, since binding colours to shapes in two-object captions is
learned late. The two transformers train with the large batch on every device (LARGE_RUN: batch 1024 for 4,500 steps
with a cosine decay of the lr; the MMDiT's took about 5 minutes on one H100; on 2 CPU cores about 2.6 hours for the
MMDiT, 1.5 for the DiT).

A denoiser run saves a snapshot (weights, EMA, optimizer, scheduler, step, random states) in its folder at every
validation; `--resume DIR` goes on from it, bit-exact on the CPU. On CUDA the U-Net's default is the
large-batch recipe (`Recipe.gpu_run`: batch 1024 for 4,500 steps); `--gpu-recipe` runs it on any device.
`--batch-size B` rescales the device's recipe by the square-root rule (`train.scale_batch`).

    torchrun --nproc-per-node N -m course_utils.retrain NAME [options]

trains a denoiser data-parallel on N processes (GPUs, or CPU processes with gloo): the batch (the recipe's or
--batch-size) is the batch of all N together, each process drawing 1/N of it from its own seed; rank 0 alone
validates, keeps the EMA and writes the folder. `--resume` takes the same N as the cut-off run.
"""

import argparse
import json
import math
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist

from .checkpoint import SHIPPED, load_model, register_shipped, save_model, shipped_vae_sha256
from .config import DATA_DIR, REPO_DIR, get_device
from .ddp import join_process_group, process_group
from .dit import dit_small
from .judge import attribute_accuracy, train_judge
from .latents import load_latents, mode_sample_weights
from .metrics import evaluate
from .mmdit import mmdit_small
from .results import git_commit
from .train import MMDIT_RUN, SHIPPED_RUN, TrainConfig, scale_batch, train
from .unet import unet_small
from .vae import reconstruction_psnr, train_vae


def large_batch(run: TrainConfig) -> TrainConfig:
    """A CPU recipe as run on one GPU: batch 1024 (lr by the square-root rule) for 4,500 steps."""
    return replace(scale_batch(run, 1024), steps=4500, warmup=200)


@dataclass(frozen=True)
class Recipe:
    """How a shipped denoiser is trained: its builder, its run on the CPU and on CUDA, and per-mode drawing
    weights of the scenes."""

    build: object
    run: TrainConfig
    gpu_run: TrainConfig
    mode_weights: dict = field(default_factory=dict)

    def for_device(self, device: torch.device) -> TrainConfig:
        return self.gpu_run if device.type == "cuda" else self.run


# The transformers' recipe on every device: 4.6 M samples with a cosine decay, the budget that taught the MMDiT
# two-object binding (88.4% at CFG 2 on one H100, issue 22). The shipped data/mmdit.pt and data/dit.pt are this run
# on 2 CPU cores (data/results/mmdit_binding.json; the README's table of data/ for the DiT).
LARGE_RUN = replace(MMDIT_RUN, batch_size=1024, lr=3e-3, steps=4500, warmup=200)
RECIPES = {
    "unet": Recipe(unet_small, SHIPPED_RUN, large_batch(SHIPPED_RUN)),
    "dit": Recipe(dit_small, LARGE_RUN, LARGE_RUN),
    "mmdit": Recipe(mmdit_small, LARGE_RUN, LARGE_RUN, {"relation": 2.5}),
}
DEFAULT_STEPS = {"vae": 3000, "judge": 3000}


def denoiser_run(name: str, steps: int = None, seed: int = 0, batch_size: int = None, compile: bool = False,
                 device=None, lr: float = None, gpu_recipe: bool = False) -> TrainConfig:
    """The TrainConfig of a shipped denoiser's recipe on `device` (gpu_recipe: the large-batch one on any device),
    with the command line's changes (an explicit lr wins over the batch-size rule)."""
    recipe = RECIPES[name]
    run = recipe.gpu_run if gpu_recipe else recipe.for_device(torch.device(device or get_device()))
    if batch_size is not None:
        run = scale_batch(run, batch_size)
    return replace(run, steps=steps or run.steps, seed=seed, compile=compile, lr=lr or run.lr)


def train_denoiser(name: str, run: TrainConfig, snapshot=None, resume=None, callback=None):
    """Train a shipped denoiser's architecture with `run`; returns (EMA model on the CPU, History)."""
    recipe = RECIPES[name]
    torch.manual_seed(run.seed)
    model = recipe.build().to(get_device())
    data, val = load_latents("train"), load_latents("val")
    weights = mode_sample_weights(data.scenes, recipe.mode_weights) if recipe.mode_weights else None
    history = train(model, data.latents, (data.ids, data.mask), config=run,
                    val=(val.latents[:1000], (val.ids[:1000], val.mask[:1000])), sample_weights=weights,
                    callback=callback, snapshot=snapshot, resume=resume, desc=name)
    return (None if history.ema is None else history.ema.cpu()), history  # None: a torchrun rank other than 0


def adherence_check(candidate, shipped, n: int = 500) -> dict:
    """Single-object adherence (CFG 2, 500 held-out captions) of both models, and whether the candidate is not
    below the shipped one by more than two standard errors of their difference."""
    a, b = (evaluate(m, n=n, cfg_scale=2.0)["adherence"] for m in (candidate, shipped))
    se = math.sqrt(max(a * (1 - a) + b * (1 - b), 1e-12) / n)
    return {"candidate": a, "shipped": b, "two_se": 2 * se, "passed": a >= b - 2 * se}


def run(name: str, steps: int, seed: int, out: Path, batch_size: int = None, compile: bool = False,
        resume: bool = False, lr: float = None, gpu_recipe: bool = False) -> tuple:
    """Train NAME into out/NAME.pt (resume: go on from out/snapshot.pt); returns (report, model)."""
    start = time.time()
    device = get_device()
    report = {"name": name, "steps": steps, "seed": seed, "device": str(device), "commit": git_commit(),
              "processes": process_group()[2]}
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    vae_sha256 = None
    if name in RECIPES:
        vae_sha256 = shipped_vae_sha256()  # the VAE whose latents it trains on, recorded in its checkpoint
        config = denoiser_run(name, steps, seed, batch_size, compile, lr=lr, gpu_recipe=gpu_recipe)
        report.update(steps=config.steps, batch_size=config.batch_size, lr=config.lr, warmup=config.warmup,
                      lr_decay=config.lr_decay)
        snapshot = out / "snapshot.pt"
        model, history = train_denoiser(name, config, snapshot, snapshot if resume else None)
        if model is None:
            return None, None  # under torchrun, rank 0 reports and writes
        report["val_loss"] = history.final_val_loss()
        report["checks"] = {"finite": math.isfinite(report["val_loss"])}
        half = True
    elif name == "vae":
        model = train_vae(steps=steps, seed=seed, **({} if lr is None else {"lr": lr}))
        report["psnr_32"] = reconstruction_psnr(model, size=32)
        report["checks"] = {"finite": math.isfinite(report["psnr_32"])}
        half = False
    elif name == "judge":
        model = train_judge(steps=steps, seed=seed, **({} if lr is None else {"lr": lr}))
        report["accuracy_32"] = attribute_accuracy(model, size=32)
        report["checks"] = {"finite": all(math.isfinite(v) for v in report["accuracy_32"].values())}
        half = False
    report["checks"]["trained"] = report["steps"] >= 1
    report["seconds"] = round(time.time() - start, 1)
    report["sha256"] = save_model(out / SHIPPED[name][0], model, step=report["steps"], half=half,
                                  vae_sha256=vae_sha256)
    return report, model


def retrain_command(settings: dict, processes: int, run: Path) -> str:
    """The command line that made a run folder, from its run.json settings (the inverse of `main`'s parsing)."""
    launcher = f"torchrun --nproc-per-node {processes}" if processes > 1 else "python"
    flags = [f"--{key.replace('_', '-')} {settings[key]}" for key in ("steps", "seed", "batch_size", "lr")
             if settings.get(key) is not None]
    flags += [f"--{key.replace('_', '-')}" for key in ("compile", "gpu_recipe") if settings.get(key)]
    return " ".join([f"{launcher} -m course_utils.retrain {settings['name']}", *flags, f"--out {run}"])


def main(argv=None):
    parser = argparse.ArgumentParser(description="Retrain a file the course ships in data/.")
    parser.add_argument("name", choices=list(SHIPPED))
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="denoisers: batch size; the lr scales by the square-root rule (default: the recipe's)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--compile", action="store_true", help="denoisers: torch.compile the model")
    parser.add_argument("--gpu-recipe", action="store_true",
                        help="denoisers: the large-batch recipe on any device (the default on CUDA)")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: a new folder under runs/)")
    parser.add_argument("--resume", type=Path, default=None, metavar="DIR",
                        help="denoisers: go on from DIR/snapshot.pt with DIR's settings, writing into DIR")
    parser.add_argument("--install", action="store_true", help="replace data/NAME.pt if the new model passes")
    parser.add_argument("--force", action="store_true", help="with --install: skip the adherence comparison")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}.")
    if args.batch_size is not None and (args.name not in RECIPES or args.batch_size < 1):
        parser.error(f"--batch-size takes a positive batch for a denoiser ({', '.join(RECIPES)}).")
    if args.lr is not None and not (args.lr > 0 and math.isfinite(args.lr)):
        parser.error(f"--lr must be a positive, finite learning rate, got {args.lr}.")
    rank = join_process_group()  # 0, unless torchrun started this process
    if dist.is_initialized():
        if args.name not in RECIPES:
            parser.error(f"torchrun trains the denoisers ({', '.join(RECIPES)}); the {args.name} trains in one "
                         f"process: python -m course_utils.retrain {args.name}.")
        if rank == 0:  # the latent cache, built once (if missing) while the other ranks wait
            for split in ("train", "val"):
                load_latents(split)
        dist.barrier()
    if args.resume is not None:
        if args.name not in RECIPES or not (args.resume / "run.json").is_file():
            parser.error(f"--resume takes the folder of a cut-off denoiser run (with run.json), got {args.resume}.")
        settings = json.loads((args.resume / "run.json").read_text())
        if settings["name"] != args.name:
            parser.error(f"{args.resume} holds a {settings['name']} run, not {args.name}.")
        out = args.resume
    else:
        settings = {"name": args.name, "steps": args.steps or DEFAULT_STEPS.get(args.name), "seed": args.seed,
                    "batch_size": args.batch_size, "compile": args.compile, "lr": args.lr,
                    "gpu_recipe": args.gpu_recipe}
        out = args.out or REPO_DIR / "runs" / f"{args.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            (out / "run.json").write_text(json.dumps(settings, indent=1))
    report, model = run(args.name, settings["steps"], settings["seed"], out, settings["batch_size"],
                        settings["compile"], resume=args.resume is not None, lr=settings.get("lr"),
                        gpu_recipe=settings.get("gpu_recipe", False))
    if rank > 0:
        return
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
