"""Checkpoint files: atomic writes, sha256 checks, and the weights the course ships in data/.

A checkpoint is a plain dict {"state_dict", "config", "step"} saved with torch.save and loaded with
``torch.load(..., weights_only=True)``. Shipped files are listed in data/SHA256SUMS (the format of
``sha256sum``, so ``cd data && sha256sum -c SHA256SUMS`` checks them by hand too).
"""

import hashlib
import os
import tempfile
from pathlib import Path

import torch

from .config import DATA_DIR

SUMS_FILE = DATA_DIR / "SHA256SUMS"


def sha256_file(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomic(path, write) -> None:
    """Call write(tmp_path) on a temporary file beside `path`, then rename it into place.

    An interrupted write leaves no file at `path`, so a half-written file can never be loaded.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(path, state_dict: dict, config: dict, step: int = 0) -> str:
    """Save {"state_dict", "config", "step"} atomically; returns the file's sha256."""
    payload = {"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "config": config, "step": step}
    write_atomic(path, lambda tmp: torch.save(payload, tmp))
    return sha256_file(path)


def load_checkpoint(path, sha256: str = None) -> dict:
    """Load a checkpoint dict; if sha256 is given the file must match it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist.")
    if sha256 is not None and sha256_file(path) != sha256:
        raise ValueError(
            f"checkpoint {path} is corrupt or was replaced: its sha256 does not match the expected {sha256[:12]}...; "
            "restore it with `git checkout -- data/` or retrain it (the README gives the command)."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise ValueError(f"checkpoint {path} could not be read ({err}); it is corrupt, retrain or restore it.") from err


def shipped_sums() -> dict:
    """{file name: sha256} of the files the course ships in data/."""
    if not SUMS_FILE.exists():
        return {}
    lines = [line.split() for line in SUMS_FILE.read_text().splitlines() if line.strip()]
    return {name.lstrip("*"): digest for digest, name in lines}


def load_shipped(name: str) -> dict:
    """Load data/<name>, verified against data/SHA256SUMS."""
    sums = shipped_sums()
    if name not in sums:
        raise FileNotFoundError(f"{name} is not among the shipped files in {SUMS_FILE}: {sorted(sums)}")
    return load_checkpoint(DATA_DIR / name, sha256=sums[name])


def register_shipped(name: str) -> str:
    """Record data/<name>'s sha256 in data/SHA256SUMS (used by the retrain commands)."""
    sums = shipped_sums()
    sums[name] = sha256_file(DATA_DIR / name)
    text = "".join(f"{digest}  {n}\n" for n, digest in sorted(sums.items()))
    write_atomic(SUMS_FILE, lambda tmp: Path(tmp).write_text(text))
    return sums[name]
