"""Course-wide settings: FAST mode, device choice, seeding, paths, and the registry of named seeds.

FAST mode (env ``COURSE_FAST=1``, set by the test command) runs every lesson on the same
code path with tiny budgets, so the whole course can be checked in minutes on a 2-core CPU.
"""

import os
import random
from pathlib import Path

import numpy as np
import torch

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def env_flag(name: str, default: bool = False) -> bool:
    """A true/false environment variable: 1/true/yes/on or 0/false/no/off (any case, spaces ignored)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE + FALSE:
        return value in TRUE
    raise ValueError(f"{name}={raw!r} is neither true nor false; use one of {', '.join(TRUE)} or "
                     f"{', '.join(v for v in FALSE if v)}.")


FAST: bool = env_flag("COURSE_FAST")

REPO_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("COURSE_DATA", REPO_DIR / "data")).resolve()  # env COURSE_DATA moves it (tests)

_DEVICES = ("cuda", "mps", "cpu")

# Every seed the course draws data with, by name. Training data never shares a seed with anything a student
# or an evaluation looks at: `training_seeds()` lists the training ones and a test checks the others avoid them.
SEEDS = {
    "train_latents": 1,  # latents.SPLITS["train"]; its shards render with seed * 10 + mode index
    "val_latents": 2,  # latents.SPLITS["val"]: validation losses during training
    "twins_train_latents": 5,  # latents.SPLITS["twins64_train"]: the long-range comparison's 64 px twins
    "twins_val_latents": 6,  # latents.SPLITS["twins64_val"]
    "vae_training": 0,  # vae.train_vae: one stream seed per step (stream_seed)
    "vae_scale": 777,  # vae.train_vae: the images that fit the latent scale factor
    "judge_training": 1,  # judge.train_judge: one stream seed per step
    "vae_test": 10_000,  # vae.reconstruction_psnr
    "judge_test": 20_000,  # judge.attribute_accuracy
    "examples": 700_000,  # the explorers' and lessons' example scenes
    "exercises": 750_000,  # the exercise checks' scenes (+ a small offset per check)
    "tests": 800_000,  # the test suite's measurements of the VAE, the judge and the metrics (+ a small offset)
    "eval_prompts": 900_000,  # metrics.evaluate: held-out captions (+ the evaluation's seed)
    "eval_real": 950_000,  # metrics.evaluate: real images for the Frechet distance (+ the evaluation's seed)
}
STREAM_STRIDE = 1_000_003  # stream_seed(seed, step) = seed * STREAM_STRIDE + step: one seed per training step


def stream_seed(seed: int, step: int) -> int:
    """The seed of step `step` of a training stream that renders fresh images every step (VAE, judge)."""
    return seed * STREAM_STRIDE + step


def training_seeds(max_steps: int = 6_000) -> dict:
    """{name: set or range of render seeds} that training data is drawn from (streams of up to max_steps steps,
    twice the shipped VAE and judge runs)."""
    splits = ("train_latents", "val_latents", "twins_train_latents", "twins_val_latents")
    shards = {10 * SEEDS[split] + k for split in splits for k in range(3)}
    return {
        "latent shards": shards,
        "vae stream": range(stream_seed(SEEDS["vae_training"], 0), stream_seed(SEEDS["vae_training"], max_steps)),
        "judge stream": range(stream_seed(SEEDS["judge_training"], 0),
                              stream_seed(SEEDS["judge_training"], max_steps)),
        "vae scale": {SEEDS["vae_scale"]},
    }


def cache_dir() -> Path:
    """data/cache/ (git-ignored), created on first use. Env ``COURSE_CACHE`` moves it."""
    path = Path(os.environ.get("COURSE_CACHE", DATA_DIR / "cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _available(device: str) -> bool:
    if device == "cuda":
        return torch.cuda.is_available()
    if device == "mps":
        return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    return device == "cpu"


def get_device() -> torch.device:
    """cuda if present, then mps, then cpu; env ``COURSE_DEVICE`` (cuda, mps or cpu) overrides."""
    wanted = os.environ.get("COURSE_DEVICE", "").strip().lower()
    if wanted:
        if wanted not in _DEVICES:
            raise ValueError(f"COURSE_DEVICE={wanted!r} is not a device; use one of {', '.join(_DEVICES)}.")
        if not _available(wanted):
            raise RuntimeError(
                f"COURSE_DEVICE={wanted!r} was asked for, but this machine's torch cannot use it "
                f"(torch {torch.__version__}); unset COURSE_DEVICE or set it to 'cpu'."
            )
        return torch.device(wanted)
    return torch.device(next(d for d in _DEVICES if _available(d)))


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; returns a CPU torch.Generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
