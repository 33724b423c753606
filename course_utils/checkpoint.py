"""Checkpoint files: atomic writes, sha256 checks, the registry of shipped models and the one `load_model`.

A checkpoint is a plain dict {"state_dict", "config", "step", "builder"} saved with torch.save and loaded with
``torch.load(..., weights_only=True)``. "builder" names the model class by dotted path ("course_utils.dit.DiT"); it is
imported on load and rebuilt with `Class.from_config(config)`, so this module imports no model. A denoiser's
checkpoint also holds "vae_sha256", the VAE its latents came from; `load_model` refuses it while data/SHA256SUMS lists
another VAE. Shipped files are listed in data/SHA256SUMS (the format of ``sha256sum``, so
``cd data && sha256sum -c SHA256SUMS`` checks them too).
"""

import dataclasses
import hashlib
import importlib
import os
import tempfile
from pathlib import Path

import torch

from .config import DATA_DIR

SUMS_FILE = DATA_DIR / "SHA256SUMS"
# name -> (file in data/, the builder class by dotted path)
SHIPPED = {
    "vae": ("vae.pt", "course_utils.vae.VAE"),
    "judge": ("judge.pt", "course_utils.judge.Judge"),
    "unet": ("unet.pt", "course_utils.unet.UNet"),
    "dit": ("dit.pt", "course_utils.dit.DiT"),
    "mmdit": ("mmdit.pt", "course_utils.mmdit.MMDiT"),
}


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


def save_checkpoint(path, state_dict: dict, config: dict, step: int = 0, builder: str = None,
                    vae_sha256: str = None) -> str:
    """Save {"state_dict", "config", "step", "builder"} (and "vae_sha256" if given) atomically; returns the file's
    sha256."""
    payload = {"state_dict": {k: v.detach().cpu() for k, v in state_dict.items()}, "config": config, "step": step,
               "builder": builder}
    if vae_sha256 is not None:
        payload["vae_sha256"] = check_sha256(vae_sha256, "vae_sha256")
    write_atomic(path, lambda tmp: torch.save(payload, tmp))
    return sha256_file(path)


def builder_name(model: torch.nn.Module) -> str:
    """The dotted path that rebuilds `model`'s class on load ("course_utils.dit.DiT")."""
    return f"{type(model).__module__}.{type(model).__qualname__}"


def save_model(path, model: torch.nn.Module, step: int = 0, half: bool = False, vae_sha256: str = None) -> str:
    """Save a course model (one with `config` and `from_config`) so that `load_model(path)` rebuilds it; returns
    the sha256. half: store floating-point weights as float16 (half the file; loading casts them back to float32).
    vae_sha256: for a denoiser, the sha256 of the VAE its latents came from (`shipped_vae_sha256()`)."""
    config = model.config
    config = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config)
    state = {k: v.half() if half and v.is_floating_point() else v for k, v in model.state_dict().items()}
    return save_checkpoint(path, state, config, step, builder_name(model), vae_sha256)


def _is_sha256(digest) -> bool:
    return isinstance(digest, str) and len(digest) == 64 and all(ch in "0123456789abcdef" for ch in digest)


def check_sha256(digest, name: str) -> str:
    """digest if it is a sha256 in hex (64 lowercase hex digits), else a ValueError naming `name`."""
    if not _is_sha256(digest):
        raise ValueError(f"{name} must be a sha256 (64 lowercase hex digits, as sha256sum prints), got {digest!r:.80}.")
    return digest


def shipped_vae_sha256() -> str:
    """The sha256 of the VAE in data/ (its line in data/SHA256SUMS): what a denoiser trained now records."""
    digest = shipped_sums().get(SHIPPED["vae"][0])
    if digest is None:
        raise FileNotFoundError(f"{SUMS_FILE} lists no {SHIPPED['vae'][0]}, so the VAE a denoiser depends on cannot "
                                "be named; restore it with `git checkout -- data/vae.pt data/SHA256SUMS`.")
    return digest


def check_vae(ckpt: dict, source) -> None:
    """Refuse a denoiser checkpoint trained on another VAE than the one data/SHA256SUMS lists (its latents would
    mean nothing to this VAE). A checkpoint that records no VAE (older runs) is not checked."""
    expected = ckpt.get("vae_sha256")
    if expected is None:
        return
    current = shipped_sums().get(SHIPPED["vae"][0])
    if current != expected:
        raise ValueError(
            f"checkpoint {source} was trained on the VAE with sha256 {expected}, but {SUMS_FILE} lists "
            f"{'no vae.pt' if current is None else f'vae.pt with sha256 {current}'}; its latents would decode to "
            "garbage. Restore the shipped VAE with `git checkout -- data/vae.pt data/SHA256SUMS`, or retrain this "
            "denoiser on the current VAE (python -m course_utils.retrain NAME).")


def _build(builder: str, config: dict, source) -> torch.nn.Module:
    module_name, _, class_name = (builder or "").rpartition(".")
    if not module_name.startswith("course_utils."):
        raise ValueError(f"checkpoint {source} names no course model to build (builder {builder!r}); "
                         "save models with checkpoint.save_model.")
    return getattr(importlib.import_module(module_name), class_name).from_config(config)


def load_model(name_or_path, device="cpu") -> torch.nn.Module:
    """A model from a checkpoint, rebuilt from its stored config, weights loaded as float32, in eval mode on device.

    name_or_path: a shipped model ("vae", "judge", "unet", "dit", "mmdit"; sha256-verified against data/SHA256SUMS)
    or the path of a checkpoint written by `save_model` (a retrain run's output, say).
    """
    if isinstance(name_or_path, str) and name_or_path in SHIPPED:
        file, builder = SHIPPED[name_or_path]
        ckpt = {**load_shipped(file), "builder": builder}
    elif isinstance(name_or_path, (str, Path)) and str(name_or_path).endswith(".pt"):
        ckpt = load_checkpoint(name_or_path)
    else:
        raise ValueError(f"load_model takes a shipped model name ({', '.join(SHIPPED)}) or the path of a .pt "
                         f"checkpoint, got {name_or_path!r}.")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be a torch device such as 'cpu', 'cuda' or 'mps', got {device!r}.") from err
    check_vae(ckpt, name_or_path)
    model = _build(ckpt.get("builder"), ckpt["config"], name_or_path)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    return model.eval().to(device)


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
    except Exception as err:  # a truncated or foreign file (torch's own message suggests weights_only=False: never)
        raise ValueError(f"checkpoint {path} could not be read ({type(err).__name__}); it is corrupt or not a course "
                         "checkpoint: retrain or restore it.") from err


def shipped_sums() -> dict:
    """{file name: sha256} of the files the course ships in data/."""
    if not SUMS_FILE.exists():
        return {}
    sums = {}
    for number, line in enumerate(SUMS_FILE.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not _is_sha256(parts[0]):
            raise ValueError(f"{SUMS_FILE} line {number} is not '<sha256>  <file>' (the sha256sum format): {line!r}; "
                             "restore it with `git checkout -- data/SHA256SUMS`.")
        sums[parts[1].lstrip("*")] = parts[0]
    return sums


def load_shipped(name: str) -> dict:
    """Load data/<name>, verified against data/SHA256SUMS."""
    if not SUMS_FILE.exists():
        raise FileNotFoundError(f"{SUMS_FILE} is missing, so no shipped file can be verified; restore it with "
                                "`git checkout -- data/SHA256SUMS`.")
    sums = shipped_sums()
    if name not in sums:
        raise FileNotFoundError(f"{name} is not among the shipped files in {SUMS_FILE}: {sorted(sums)}")
    return load_checkpoint(DATA_DIR / name, sha256=sums[name])


def register_shipped(name: str) -> str:
    """Record data/<name>'s sha256 in data/SHA256SUMS (used by the retrain command's --install)."""
    sums = shipped_sums()
    sums[name] = sha256_file(DATA_DIR / name)
    text = "".join(f"{digest}  {n}\n" for n, digest in sorted(sums.items()))
    write_atomic(SUMS_FILE, lambda tmp: Path(tmp).write_text(text))
    return sums[name]
