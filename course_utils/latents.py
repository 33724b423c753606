"""The latent dataset every lesson trains on: Shapes images encoded once by the VAE, then cached.

A split is built on first use (render, encode, tokenize) and cached in data/cache/ beside a JSON
manifest that records how it was built and the file's sha256. Files are written atomically, under a file lock that
makes processes wanting the same split at once build it once; a corrupt, partial or stale cache (other VAE, other
recipe) is detected on load and rebuilt.
"""

import json
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from filelock import FileLock
from tqdm.auto import tqdm

from .checkpoint import SHIPPED, sha256_file, shipped_sums, write_atomic
from .config import FAST, SEEDS, cache_dir
from .data import COLOURS, MODES, RELATIONS, SHAPES, SIZES, Tokenizer, render_shapes, to_float
from .vae import load_vae

FORMAT_VERSION = 2
MODE_SHARES = {"single": 0.4, "relation": 0.4, "pair": 0.2}
TWINS_SHARES = {"twins": 1.0}  # two identical objects at any two cells: long-range consistency by distance
# split -> (number of images, seed, image size, shares of the scene modes)
SPLITS = {
    "train": (50_000, SEEDS["train_latents"], 32, MODE_SHARES),
    "val": (5_000, SEEDS["val_latents"], 32, MODE_SHARES),
    "twins64_train": (1_024 if FAST else 20_000, SEEDS["twins_train_latents"], 64, TWINS_SHARES),  # 16x16 latents
    "twins64_val": (256 if FAST else 1_000, SEEDS["twins_val_latents"], 64, TWINS_SHARES),
}
# FAST mode (CI) cuts the 64 px twins splits, which take minutes to encode in full, to seconds; they are cached under
# their own names, so a FAST run never replaces a student's full cache.
FAST_CUT = ("twins64_train", "twins64_val") if FAST else ()


_FIELDS = (("shape", SHAPES), ("colour", tuple(COLOURS)), ("size", SIZES))


def encode_records(records: list) -> tuple:
    """Scene records -> (objects (N, 2, 7) float: shape, colour, size ids, row, col, x, y; -1 where there
    is no second object), (scenes (N, 2) long: mode id, relation id or -1). Tensors load fast."""
    objects = torch.full((len(records), 2, 7), -1.0)
    scenes = torch.full((len(records), 2), -1, dtype=torch.long)
    for i, rec in enumerate(records):
        scenes[i, 0] = MODES.index(rec["mode"])
        scenes[i, 1] = RELATIONS.index(rec["relation"]) if rec["relation"] else -1
        for j, o in enumerate(rec["objects"]):
            ids = [values.index(o[name]) for name, values in _FIELDS]
            objects[i, j] = torch.tensor([*ids, o["row"], o["col"], o["x"], o["y"]])
    return objects, scenes


def decode_records(objects: torch.Tensor, scenes: torch.Tensor) -> list:
    """The inverse of encode_records."""
    records = []
    for obj_rows, (mode, relation) in zip(objects.tolist(), scenes.tolist()):
        objs = [{**{name: values[int(row[k])] for k, (name, values) in enumerate(_FIELDS)},
                 "row": int(row[3]), "col": int(row[4]), "x": row[5], "y": row[6]}
                for row in obj_rows if row[0] >= 0]
        records.append({"mode": MODES[mode], "relation": RELATIONS[relation] if relation >= 0 else None,
                        "objects": objs})
    return records


@dataclass
class LatentDataset:
    """latents (N, 4, h, w) float32 at unit std; ids, mask (N, L) from the Tokenizer; captions;
    objects (N, 2, 7) and scenes (N, 2), the attribute records as tensors (`records` decodes them)."""

    latents: torch.Tensor
    ids: torch.Tensor
    mask: torch.Tensor
    captions: list
    objects: torch.Tensor
    scenes: torch.Tensor

    def __len__(self) -> int:
        return len(self.latents)

    @cached_property
    def records(self) -> list:
        return decode_records(self.objects, self.scenes)

    def to_file(self) -> dict:
        fields = {k: getattr(self, k) for k in ("latents", "ids", "mask", "objects", "scenes")}
        return {**fields, "captions": "\n".join(self.captions)}

    @classmethod
    def from_file(cls, payload: dict) -> "LatentDataset":
        return cls(**{**payload, "captions": payload["captions"].split("\n")})


def build_latents(n: int, seed: int, size: int = 32, shares: dict = MODE_SHARES, batch_size: int = 500,
                  vae=None) -> LatentDataset:
    """Render n scenes in the modes' shares (default 40% single, 40% relation, 20% pair), encode them with the VAE,
    tokenize the captions."""
    vae = vae or load_vae()
    parts = []
    counts = {mode: int(n * share) for mode, share in shares.items()}
    counts[next(iter(counts))] += n - sum(counts.values())
    for k, (mode, count) in enumerate(counts.items()):
        if count:
            parts.append(render_shapes(count, seed=seed * 10 + k, size=size, mode=mode))
    images = torch.cat([p.images for p in parts])
    captions = [c for p in parts for c in p.captions]
    records = [r for p in parts for r in p.records]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    images = images[order]
    captions, records = [captions[i] for i in order], [records[i] for i in order]
    latents = torch.cat([vae.encode(to_float(images[i : i + batch_size]))
                         for i in tqdm(range(0, n, batch_size), desc="encoding", leave=False)])
    ids, mask = Tokenizer().encode(captions)
    return LatentDataset(latents.contiguous(), ids, mask, captions, *encode_records(records))


def _paths(split: str) -> tuple:
    name = f"{split}_fast" if split in FAST_CUT else split
    return cache_dir() / f"latents_{name}.pt", cache_dir() / f"latents_{name}.json"


def _recipe(split: str) -> dict:
    n, seed, size, shares = SPLITS[split]
    return {"format": FORMAT_VERSION, "split": split, "n": n, "seed": seed, "size": size,
            "modes": shares, "vae_sha256": shipped_sums().get(SHIPPED["vae"][0])}


def cache_status(split: str) -> str:
    """'ok', or why the cached split cannot be used ('missing', 'stale', 'corrupt')."""
    data_path, manifest_path = _paths(split)
    if not data_path.exists() or not manifest_path.exists():
        return "missing"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "corrupt"
    if not isinstance(manifest, dict):
        return "corrupt"
    if manifest.get("recipe") != _recipe(split):
        return "stale"
    if sha256_file(data_path) != manifest.get("sha256"):
        return "corrupt"
    return "ok"


def load_latents(split: str = "train", verbose: bool = True) -> LatentDataset:
    """The cached latent dataset of a split, built on first use: "train" (50,000) and "val" (5,000) at 32 px, and
    "twins64_train" (20,000) and "twins64_val" (1,000) of two identical objects at 64 px (16x16 latents; 1,024 and
    256 in FAST mode)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; the splits are {sorted(SPLITS)}.")
    data_path, manifest_path = _paths(split)
    with FileLock(f"{data_path}.lock"):  # processes that want a missing split at once (test workers, two
        status = cache_status(split)  # notebooks) build it once: the others wait, then load it
        if status == "ok":
            return LatentDataset.from_file(torch.load(data_path, weights_only=True))
        n, seed, size, shares = SPLITS[split]
        if verbose:
            print(f"building the {split} latents ({n:,} images; cache {status}) ...", flush=True)
        start = time.time()
        ds = build_latents(n, seed, size, shares)
        write_atomic(data_path, lambda tmp: torch.save(ds.to_file(), tmp))
        seconds = round(time.time() - start, 1)
        manifest = {"recipe": _recipe(split), "sha256": sha256_file(data_path), "seconds": seconds}
        write_atomic(manifest_path, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1)))
        return ds


def mode_sample_weights(scenes: torch.Tensor, mode_weights: dict) -> torch.Tensor:
    """Per-sample drawing weights (N,) from the scene modes (scenes[:, 0], ids into data.MODES); modes not named
    in mode_weights weigh 1. E.g. {"relation": 2.5} draws two-object scenes 2.5x as often as the others."""
    unknown = set(mode_weights) - set(MODES)
    if unknown:
        raise ValueError(f"unknown scene mode(s) {sorted(unknown)}; the modes are {MODES}.")
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0 for w in mode_weights.values()) \
            or not any(mode_weights.get(m, 1.0) > 0 for m in MODES):
        raise ValueError(f"mode_weights must map modes to non-negative numbers, not all zero, got {mode_weights!r}.")
    if not isinstance(scenes, torch.Tensor) or scenes.ndim != 2 or scenes.is_floating_point():
        got = tuple(scenes.shape) if isinstance(scenes, torch.Tensor) else type(scenes).__name__
        raise ValueError(f"scenes must be the integer scene table (N, K) of a LatentDataset (mode id in column 0), "
                         f"got {got}.")
    per_mode = torch.tensor([float(mode_weights.get(m, 1.0)) for m in MODES])
    return per_mode[scenes[:, 0]]
