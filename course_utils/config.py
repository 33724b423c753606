"""Course-wide settings: FAST mode, device choice, seeding and paths.

FAST mode (env ``COURSE_FAST=1``, set by the test command) runs every lesson on the same
code path with tiny budgets, so the whole course can be checked in minutes on a 2-core CPU.
"""

import os
import random
from pathlib import Path

import numpy as np
import torch

FAST: bool = os.environ.get("COURSE_FAST", "0") == "1"

REPO_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_DIR / "data"

_DEVICES = ("cuda", "mps", "cpu")


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
