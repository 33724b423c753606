"""Latent space makes generation tractable (Rombach et al., 2022): the `latent_vs_pixel` experiment.

The same DiT (adaLN-Zero, width 128, depth 4, 4 heads) trains on the same scenes three ways: on their 4x8x8 VAE
latents with 2x2 patches, and on their 32x32 RGB pixels with 8x8 patches (the same 16 tokens) and with 2x2 patches
(the latent model's patch: 256 tokens). Every variant gets the same wall-clock training time; its number of steps is
what fits, from its time per step measured before training (all variants back to back). Per variant and seed: time
per step, the memory a training step holds for backward, Gflops, parameters, and the quality its samples reach in
that time (single-object adherence and Frechet distance of the judge, on images; a pixel model's samples are images).

    python -m course_utils.latent_vs_pixel --scale reference      # -> data/results/latent_vs_pixel.json
"""

import argparse
import copy
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .checkpoint import load_model
from .config import FAST, REPO_DIR, get_device, seed_everything
from .data import Shapes, render_shapes, to_float
from .dit import DIT_TINY, DiT
from .flow import flow_matching_loss
from .latents import SPLITS, load_latents
from .metrics import evaluate
from .results import difference, new_result, record_seed, ship_result, summarize, verdict
from .train import LESSON_RUN, train

# variant -> (space, patch size); each is DIT_TINY on that space (variant_config)
VARIANTS = {"latent_p2": ("latent", 2), "pixel_p8": ("pixel", 8), "pixel_p2": ("pixel", 2)}
PIXEL_SPLITS = ("train", "val")  # the 32 px splits: the pixel DiTs take 32x32 images
CFG_SCALE = 2.0
CLAIM = ("Latent space makes generation tractable: at equal training time, the DiT on 4x8x8 VAE latents (patch 2, 16 "
         "tokens) samples closer to real images (a lower Frechet distance) than the same DiT on 32x32 pixels at the "
         "same token count (patch 8), and the pixel DiT with the latent model's patch (2, 256 tokens) pays many times "
         "the time and memory per step (the lecture's latent diffusion argument, after Rombach et al., 2022).")
KEY = ("frechet_single", "latent_p2", "pixel_p8")
NOTES = {
    "model": "DIT_TINY (adaLN-Zero, width 128, depth 4, 4 heads, absolute positions) with in_channels, input_size and "
             "patch_size set by the space: latent_p2 4x8x8 latents, patch 2, 16 tokens; pixel_p8 3x32x32 pixels, "
             "patch 8, 16 tokens; pixel_p2 3x32x32 pixels, patch 2, 256 tokens",
    "equalised": "the transformer (width, depth, heads), the training loop (LESSON_RUN: batch, lr, CFG dropout, "
                 "logit-normal times; warmup 10% of each variant's steps), the scenes and captions (image i is the "
                 "one latent i was encoded from), the seeds, the wall-clock training time, and the evaluation "
                 "(held-out captions, CFG 2, 25 Euler steps, the judge on 32x32 images)",
    "not equalised": "steps (what fits the time), Gflops and memory (what the space and patch cost), parameters (the "
                     "patch embedding and output layer grow with p*p*C), and the VAE: the latent model stands on a "
                     "pretrained autoencoder whose encoding (once, into the cache) is not counted in its time; its "
                     "decoding is part of sampling, and its decoder draws Shapes-like images from almost any latent, "
                     "which favours the latent model's Frechet distance early. Pixels are in [-1, 1], latents at unit "
                     "std, as each space is used",
    "memory": "activation_mb: the tensors autograd keeps for backward in one training forward, each storage once, "
              "parameters not counted (the part of a step's memory that grows with tokens); peak_cuda_mb on CUDA "
              "only: torch.cuda.max_memory_allocated during the variant's timed steps minus what was allocated "
              "before them (its working memory: activations, gradients, temporaries)",
    "timing": "step_ms: the median over rounds of a training step's time (the loss, backward, clipping, fused AdamW, "
              "as train runs it), all variants timed back to back before any training; steps = floor(seconds / "
              "step time); train_seconds: what the training then took",
}


@dataclass(frozen=True)
class TimeBudget:
    """seconds of training per (variant, seed), batch_size samples a step, on the first n_train scenes of `split`;
    n_eval held-out single-object captions per seed; rounds x 2 timed steps per variant (after 2 warm-up steps)."""

    seconds: float
    seeds: tuple
    batch_size: int = 64
    n_eval: int = 100
    n_train: int = 20_000
    split: str = "train"
    rounds: int = 3


SCALES = {
    "fast": TimeBudget(seconds=1.0, seeds=(0,), batch_size=16, n_eval=16, n_train=512, split="val", rounds=1),
    # one seed of 60 s per variant: a demo, with the binomial interval over prompts for adherence
    "lesson": TimeBudget(seconds=60.0, seeds=(0,), n_eval=100),
    "reference": TimeBudget(seconds=300.0, seeds=(0, 1, 2), n_eval=500, n_train=50_000),
}


def variant_config(variant: str):
    """The DiTConfig of a variant (VARIANTS): DIT_TINY on 4x8x8 latents or on 3x32x32 pixels, at its patch size."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}.")
    space, patch = VARIANTS[variant]
    if space == "latent":
        return replace(DIT_TINY, patch_size=patch)
    return replace(DIT_TINY, in_channels=3, input_size=32, patch_size=patch)


def tokens(config) -> int:
    """Patch tokens per sample at the config's training size."""
    return (config.input_size // config.patch_size) ** 2


def allot_steps(seconds: float, step_seconds: float) -> int:
    """The equal-time rule: the whole number of steps of `step_seconds` each that fit `seconds` (at least 1)."""
    for name, value in (("seconds", seconds), ("step_seconds", step_seconds)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}.")
    return max(1, math.floor(seconds / step_seconds + 1e-9))


def render_split(split: str = "train") -> Shapes:
    """The scenes of a 32 px latent split (latents.SPLITS) as uint8 images (N, 3, 32, 32) with captions and records,
    in the cached latents' order: the same shards (seed * 10 + mode index) and shuffle as latents.build_latents, so
    image i is the one latent i was encoded from. The 50,000 of "train" take about 11 s to render on one core."""
    if split not in PIXEL_SPLITS:
        raise ValueError(f"split must be one of {PIXEL_SPLITS} (the 32 px splits), got {split!r}.")
    n, seed, size, shares = SPLITS[split]
    counts = {mode: int(n * share) for mode, share in shares.items()}
    counts[next(iter(counts))] += n - sum(counts.values())
    parts = [render_shapes(count, seed=seed * 10 + k, size=size, mode=mode)
             for k, (mode, count) in enumerate(counts.items()) if count]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    captions, records = [c for p in parts for c in p.captions], [r for p in parts for r in p.records]
    return Shapes(torch.cat([p.images for p in parts])[order], [captions[i] for i in order],
                  [records[i] for i in order])


def training_data(split: str, n: int) -> dict:
    """The first n scenes of a split in both spaces: {"latent": latents (n, 4, 8, 8), "pixel": images (n, 3, 32, 32)
    float in [-1, 1], "cond": (ids, mask) (n, L) shared by both}."""
    if split not in PIXEL_SPLITS:
        raise ValueError(f"split must be one of {PIXEL_SPLITS} (the 32 px splits), got {split!r}.")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= SPLITS[split][0]:
        raise ValueError(f"n must be a whole number of scenes from 1 to {SPLITS[split][0]:,}, got {n!r}.")
    latents, scenes = load_latents(split, verbose=False), render_split(split)
    if latents.captions[:n] != scenes.captions[:n]:
        raise ValueError(f"the cached {split} latents do not hold the rendered scenes' captions: the cache is of "
                         "another recipe; delete data/cache/ to rebuild it.")
    return {"latent": latents.latents[:n], "pixel": to_float(scenes.images[:n]),
            "cond": (latents.ids[:n], latents.mask[:n])}


def activation_bytes(model, x1: torch.Tensor, cond) -> int:
    """Bytes of the tensors autograd keeps for backward in one forward of the flow-matching loss on batch x1, each
    storage counted once and the model's parameters not at all."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    kept = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=x1.device.type == "cuda")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast:
        loss = flow_matching_loss(model, x1, cond, schedule=LESSON_RUN.schedule)
    del loss
    return sum(kept.values())


def measure_steps(models: dict, data: dict, batch_size: int, rounds: int = 3) -> dict:
    """Time a training step of every model back to back, as train runs one (the loss under autocast on CUDA,
    backward, clipping, fused AdamW): 2 warm-up steps each, then `rounds` rounds of 2 timed steps per model, the
    models interleaved so that a change in the machine's load hits all alike. models: {variant: model} (trained in
    place: pass copies); data: training_data's dict. Returns {variant: {"step_ms" (the median), "activation_mb",
    "peak_cuda_mb" (CUDA only)}}."""
    gen = torch.Generator().manual_seed(0)
    state, out = {}, {}
    for variant, model in models.items():
        device = next(model.parameters()).device
        idx = torch.randint(len(data["cond"][0]), (batch_size,), generator=gen)
        x1 = data[VARIANTS[variant][0]][idx].to(device)
        cond = tuple(c[idx].to(device) for c in data["cond"])
        opt = torch.optim.AdamW(model.parameters(), lr=LESSON_RUN.lr, fused=device.type in ("cuda", "cpu") or None)
        state[variant] = (model, x1, cond, opt, device)
        out[variant] = {"activation_mb": activation_bytes(model, x1, cond) / 2**20}

    def steps(variant, n):
        model, x1, cond, opt, device = state[variant]
        autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(n):
            with autocast:
                loss = flow_matching_loss(model, x1, cond, schedule=LESSON_RUN.schedule)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), LESSON_RUN.grad_clip, foreach=True)
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - start) / n

    times = {variant: [] for variant in models}
    for variant in models:
        steps(variant, 2)  # warm-up: first-call costs (allocator, kernels) are not a step's
    for _ in range(rounds):
        for variant in models:
            device = state[variant][4]
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            times[variant].append(steps(variant, 2))
            if device.type == "cuda":  # what this variant's steps added on top of what was allocated before them
                peak = (torch.cuda.max_memory_allocated(device) - before) / 2**20
                out[variant]["peak_cuda_mb"] = max(out[variant].get("peak_cuda_mb", 0.0), peak)
    for variant in models:
        out[variant]["step_ms"] = 1000 * statistics.median(times[variant])
    return out


def run_variant(variant: str, seed: int, steps: int, budget: TimeBudget, data: dict, device, keep: dict = None) -> dict:
    """Train one variant for `steps` steps from `seed` (LESSON_RUN, warmup 10% of the steps) and score its samples:
    {"train_seconds", "adherence_single", "frechet_single", "eval_seconds"}."""
    seed_everything(seed)
    model = DiT(variant_config(variant)).to(device)
    config = replace(LESSON_RUN, steps=steps, batch_size=budget.batch_size, seed=seed, warmup=max(1, steps // 10),
                     val_every=steps)
    history = train(model, data[VARIANTS[variant][0]], data["cond"], config=config,
                    desc=f"latent_vs_pixel: {variant}, seed {seed}, {steps} steps")
    model.eval()
    start = time.time()
    scored = evaluate(model, n=budget.n_eval, mode="single", cfg_scale=CFG_SCALE, seed=seed, vae=data["vae"],
                      judge=data["judge"])
    if keep is not None:
        keep[(variant, seed)] = model
    return {"train_seconds": history.seconds, "adherence_single": scored["adherence"],
            "frechet_single": scored["frechet"], "eval_seconds": time.time() - start}


def run_latent_vs_pixel(scale: str = "lesson", variants=None, device=None, progress=None, keep: dict = None) -> dict:
    """Time every variant's training step back to back, then train each for the steps that fit the scale's seconds
    (the same for every seed) and score it; returns the result in the results schema, per variant and seed: "tokens",
    "params", "gflops", "step_ms", "activation_mb" (and "peak_cuda_mb" on CUDA), "steps", "train_seconds",
    "adherence_single", "frechet_single", "eval_seconds", "seconds". "lesson" means the fast budget in FAST mode.
    progress: a JSON file that keeps the timings and each finished (variant, seed), resumed from if its budget is the
    same. keep: a dict that receives each trained model under (variant, seed)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {tuple(SCALES)}, got {scale!r}.")
    budget = SCALES["fast" if scale == "lesson" and FAST else scale]
    variants = list(VARIANTS) if variants is None else list(variants)
    if not variants or any(v not in VARIANTS for v in variants):
        raise ValueError(f"the variants are {', '.join(VARIANTS)}; got {variants!r}.")
    device = device or get_device()
    record = {**asdict(budget), "seeds": list(budget.seeds), "scale": scale, "cfg_scale": CFG_SCALE,
              "sampler": "Euler, 25 steps", "rule": "equal training time per (variant, seed)", **NOTES}
    result = new_result("latent_vs_pixel", CLAIM, KEY, f"python -m course_utils.latent_vs_pixel --scale {scale}",
                        device, record)
    if progress is not None and Path(progress).exists():
        kept = json.loads(Path(progress).read_text())
        if kept.get("budget") == result["budget"]:
            result.update({k: kept[k] for k in ("variants", "seconds", "timing") if k in kept})
    start = time.time()
    data = training_data(budget.split, budget.n_train)
    data.update(vae=load_model("vae", device), judge=load_model("judge", device))
    models = {v: DiT(variant_config(v)).to(device) for v in variants}
    if any(v not in result.get("timing", {}) for v in variants):  # timed once, back to back, before any training
        fresh = measure_steps({v: copy.deepcopy(m) for v, m in models.items()}, data, budget.batch_size, budget.rounds)
        result["timing"] = {**fresh, **result.get("timing", {})}  # a resumed run keeps the timings it trained with
    result["seconds"] += time.time() - start
    for variant in variants:
        model, timing = models[variant], result["timing"][variant]
        fixed = {"tokens": tokens(model.config), "params": sum(p.numel() for p in model.parameters()),
                 "gflops": model.forward_gflops(), **timing,
                 "steps": allot_steps(budget.seconds, timing["step_ms"] / 1000)}
        entry = result["variants"].setdefault(variant, {"seeds": [], "metrics": {}})
        for seed in budget.seeds:
            if seed in entry["seeds"]:
                continue
            start = time.time()
            measured = {**fixed, **run_variant(variant, seed, fixed["steps"], budget, data, device, keep)}
            measured["seconds"] = time.time() - start
            record_seed(result, variant, seed, measured, progress)
    result["complete"] = all(result["variants"][v]["seeds"] == list(budget.seeds) for v in variants)
    return result


def ratio(result: dict, metric: str, a: str, b: str) -> float:
    """How many times variant a's mean of a metric is variant b's (e.g. step_ms of pixel_p2 over latent_p2)."""
    means = [statistics.fmean(result["variants"][v]["metrics"][metric]) for v in (a, b)]
    return means[0] / means[1]


COLUMNS = ("tokens", "gflops", "step_ms", "activation_mb", "steps", "adherence_single", "frechet_single")


def report(result: dict) -> str:
    """A text table, one row per variant: tokens, Gflops, ms per step, activation MB, steps in the time, adherence
    with its 95% interval over all prompts, and the Frechet distance (with its 95% interval over seeds when there are
    several; one seed has none)."""
    summaries = {m: summarize(result, m) for m in ("adherence_single", "frechet_single")}
    lines = [f"{'variant':>10} | tokens | Gflops | ms/step | activation MB | steps | {'adherence (95%)':>33} | Frechet"]
    for variant, entry in result["variants"].items():
        mean = {m: statistics.fmean(v) for m, v in entry["metrics"].items() if m in COLUMNS}
        frechet = summaries["frechet_single"][variant]
        lines.append(f"{variant:>10} | {mean['tokens']:6.0f} | {mean['gflops']:6.4f} | {mean['step_ms']:7.0f} | "
                     f"{mean['activation_mb']:13.0f} | {mean['steps']:5.0f} | "
                     f"{format(summaries['adherence_single'][variant], '.1%'):>33} | "
                     + (f"{frechet.mean:.1f}" if frechet.n == 1 else f"{frechet:.1f}"))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m course_utils.latent_vs_pixel", description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=tuple(SCALES), default="reference")
    args = parser.parse_args(argv)
    progress = REPO_DIR / "runs" / "experiments" / f"latent_vs_pixel-{args.scale}.json"
    result = run_latent_vs_pixel(args.scale, progress=progress)
    print(report(result))
    print(f"time per step, pixel_p2 / latent_p2: {ratio(result, 'step_ms', 'pixel_p2', 'latent_p2'):.1f}x")
    print(f"{KEY[1]} - {KEY[2]} ({KEY[0]}): {difference(result)}; {verdict(result)}")
    if args.scale == "reference" and result["complete"]:
        print(ship_result(result))


if __name__ == "__main__":
    main()
