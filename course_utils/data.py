"""The Shapes dataset: procedural, captioned images, and the word tokenizer for its captions.

Every image holds one or two anti-aliased shapes on a plain dark background, placed in the cells of a
3x3 grid. Captions come from a small grammar, so a judge can check a generated image against its
caption exactly. Same seed, same bytes.
"""

from dataclasses import dataclass

import numpy as np
import torch

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {
    "red": (230, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "purple": (150, 60, 210),
    "orange": (250, 140, 20),
    "cyan": (40, 210, 220),
    "white": (245, 245, 245),
}
SIZES = ("small", "large")
ROWS = ("top", "middle", "bottom")
COLS = ("left", "center", "right")
RELATIONS = ("above", "below", "to the left of", "to the right of")
MODES = ("single", "relation", "pair", "twins")
BACKGROUND = (24, 24, 32)

RADIUS = {"small": 2.6, "large": 4.2}  # pixels, the same at every image size
JITTER = 0.07  # fraction of a grid cell by which a centre may move off the cell centre


def position_name(row: int, col: int) -> str:
    """Grid cell -> its name in captions: (0, 0) -> 'top left', (1, 1) -> 'center'."""
    if not (row in range(3) and col in range(3)):
        raise ValueError(f"row and col must each be 0, 1 or 2 (a cell of the 3x3 grid), got row {row!r}, col {col!r}.")
    if (row, col) == (1, 1):
        return "center"
    return f"{ROWS[row]} {COLS[col]}"


def relation_holds(relation: str, a: dict, b: dict) -> bool:
    """Whether object a stands in `relation` to object b (by grid cell)."""
    return {
        "above": a["row"] < b["row"],
        "below": a["row"] > b["row"],
        "to the left of": a["col"] < b["col"],
        "to the right of": a["col"] > b["col"],
    }[relation]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption_for(record: dict) -> str:
    """The caption the grammar gives a scene record."""
    objs = record["objects"]
    if record["mode"] == "single":
        o = objs[0]
        return f"a {o['size']} {o['colour']} {o['shape']} in the {position_name(o['row'], o['col'])}"
    if record["mode"] == "relation":
        a, b = objs
        return (f"{_article(a['colour'])} {a['colour']} {a['shape']} {record['relation']} "
                f"{_article(b['colour'])} {b['colour']} {b['shape']}")
    o = objs[0]
    return f"two {o['size']} {o['colour']} {o['shape']}s"


@dataclass
class Shapes:
    """A batch of the Shapes dataset.

    images:   uint8 (n, 3, size, size)
    captions: n strings from the grammar
    records:  n dicts {"mode", "relation", "objects": [{"shape", "colour", "size", "row", "col", "x", "y"}]}
    """

    images: torch.Tensor
    captions: list
    records: list

    def __len__(self) -> int:
        return len(self.captions)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [-1, 1]."""
    return images.float() / 127.5 - 1.0


def float_images(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Images as the course reads them: uint8 in [0, 255] are converted, floats must already lie in [-1, 1].

    Checks the values (a host sync), so call it where images are read, never inside a network's forward.
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a batch (B, 3, H, W) of RGB images, got {got}.")
    if images.dtype == torch.uint8:
        return to_float(images)
    if not images.is_floating_point():
        raise ValueError(f"{name} must be uint8 in [0, 255] or floats in [-1, 1], got dtype {images.dtype}.")
    low, high = images.aminmax()
    if not (torch.isfinite(low) and torch.isfinite(high) and low >= -1.001 and high <= 1.001):
        raise ValueError(f"{name} must be floats in [-1, 1] (or uint8 in [0, 255]), got values from {low:.3g} to "
                         f"{high:.3g}; convert 0..255 floats with data.to_float(images.to(torch.uint8)).")
    return images


def _sample_scenes(rng: np.random.Generator, n: int, mode: str) -> list:
    """Draw n scene records. mode 'mixed' gives half single-object and half relation scenes."""
    records = []
    modes = rng.choice(["single", "relation"], size=n) if mode == "mixed" else [mode] * n
    for m in map(str, modes):
        shape, colour, size = SHAPES[rng.integers(4)], list(COLOURS)[rng.integers(8)], SIZES[rng.integers(2)]
        obj = {"shape": shape, "colour": colour, "size": size}
        if m == "single":
            cell = rng.integers(9)
            records.append({"mode": m, "relation": None, "objects": [{**obj, "row": cell // 3, "col": cell % 3}]})
        elif m == "pair":
            cell = rng.choice([0, 1, 2, 3])  # mirrored through the centre: opposite corners or edges
            a = {**obj, "row": cell // 3, "col": cell % 3}
            b = {**obj, "row": 2 - a["row"], "col": 2 - a["col"]}
            if rng.integers(2):
                a, b = b, a
            records.append({"mode": m, "relation": None, "objects": [a, b]})
        elif m == "twins":
            cells = rng.choice(9, size=2, replace=False)  # any two cells: neighbours up to opposite corners
            a, b = ({**obj, "row": cell // 3, "col": cell % 3} for cell in cells)
            records.append({"mode": m, "relation": None, "objects": [a, b]})
        else:
            cells = rng.choice(9, size=2, replace=False)
            a = {**obj, "row": cells[0] // 3, "col": cells[0] % 3}
            b = {"shape": SHAPES[rng.integers(4)], "colour": list(COLOURS)[rng.integers(8)],
                 "size": SIZES[rng.integers(2)], "row": cells[1] // 3, "col": cells[1] % 3}
            true_relations = [r for r in RELATIONS if relation_holds(r, a, b)]
            relation = true_relations[rng.integers(len(true_relations))]
            records.append({"mode": m, "relation": relation, "objects": [a, b]})
    for rec in records:
        for o in rec["objects"]:
            o["row"], o["col"] = int(o["row"]), int(o["col"])
    return records


def _signed_distance(shape: str, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Signed distance in pixels (negative inside) from a shape of radius r centred at the origin."""
    if shape == "circle":
        return np.sqrt(dx**2 + dy**2) - r
    if shape == "square":
        half = 0.86 * r
        qx, qy = np.abs(dx) - half, np.abs(dy) - half
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0)
    if shape == "diamond":
        return (np.abs(dx) + np.abs(dy) - 1.2 * r) / np.sqrt(2)
    # triangle pointing up, circumradius 1.25 r, centroid at the origin (y grows downwards)
    inradius = 0.625 * r
    s3 = np.sqrt(3) / 2
    return np.maximum.reduce([dy, -s3 * dx - 0.5 * dy, s3 * dx - 0.5 * dy]) - inradius


def _render(records: list, size: int, rng: np.random.Generator) -> np.ndarray:
    """Rasterise scene records into uint8 images (n, 3, size, size), anti-aliased by pixel coverage."""
    n, cell = len(records), size / 3
    canvas = np.empty((n, size, size, 3), np.float32)
    canvas[:] = BACKGROUND
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    for slot in range(2):
        idx = [i for i, rec in enumerate(records) if len(rec["objects"]) > slot]
        objs = [records[i]["objects"][slot] for i in idx]
        jitter = rng.uniform(-JITTER, JITTER, size=(len(objs), 2)) * cell
        for o, (jx, jy) in zip(objs, jitter):
            o["x"] = float((o["col"] + 0.5) * cell + jx)
            o["y"] = float((o["row"] + 0.5) * cell + jy)
        for shape in SHAPES:
            sel = [k for k, o in enumerate(objs) if o["shape"] == shape]
            if not sel:
                continue
            cx = np.array([objs[k]["x"] for k in sel], np.float32)[:, None, None]
            cy = np.array([objs[k]["y"] for k in sel], np.float32)[:, None, None]
            r = np.array([RADIUS[objs[k]["size"]] for k in sel], np.float32)[:, None, None]
            cover = np.clip(0.5 - _signed_distance(shape, xs - cx, ys - cy, r), 0, 1)[..., None]
            colour = np.array([COLOURS[objs[k]["colour"]] for k in sel], np.float32)[:, None, None, :]
            rows = np.array([idx[k] for k in sel])
            canvas[rows] = canvas[rows] * (1 - cover) + colour * cover
    return np.ascontiguousarray(np.rint(canvas).astype(np.uint8).transpose(0, 3, 1, 2))


def check_count(name: str, value, what: str = "images") -> int:
    """value as an int if it is a positive whole number, else a ValueError naming the argument."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer number of {what}, got {value!r}.")
    return int(value)


def check_size(size, name: str = "size") -> int:
    """size as an int if it is an image side the course draws (a positive multiple of 16), else a ValueError."""
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 16 or size % 16:
        raise ValueError(f"{name} must be a positive multiple of 16 (e.g. 32 or 64), got {size!r}.")
    return int(size)


def check_mode(mode, modes: tuple = MODES + ("mixed",)) -> str:
    if not isinstance(mode, str) or mode not in modes:
        raise ValueError(f"mode must be one of {modes}, got {mode!r}.")
    return mode


def render_shapes(n: int, seed: int, size: int = 32, mode: str = "mixed") -> Shapes:
    """Generate n captioned Shapes images, deterministically from `seed`.

    mode: "mixed" (half one object, half two objects in a relation), "single", "relation", "pair"
          (two identical objects at mirrored positions, far apart: the long-range consistency test), or "twins"
          (two identical objects at any two cells, from neighbours to opposite corners: consistency by distance).
    size: image side in pixels, a multiple of 16 (32 or 64 in the course); objects keep their pixel
          size, so a larger image has more room, not larger shapes.
    """
    n, size, mode = check_count("n", n), check_size(size), check_mode(mode)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (the same seed gives the same images), got {seed!r}.")
    rng = np.random.default_rng(seed)
    records = _sample_scenes(rng, n, mode)
    images = torch.from_numpy(_render(records, size, rng))
    return Shapes(images, [caption_for(rec) for rec in records], records)


def all_words() -> list:
    """Every word the caption grammar can produce, in a fixed order."""
    words = ["a", "an", "two", "in", "the", "center", *SIZES, *COLOURS, *SHAPES, *(s + "s" for s in SHAPES),
             *ROWS, *COLS, "above", "below", "to", "of"]
    return list(dict.fromkeys(words))


class Tokenizer:
    """Word-level tokenizer over the caption grammar. Id 0 is padding.

    encode(captions) -> (ids (B, max_len) long, mask (B, max_len) bool, True on real words)
    """

    PAD = "<pad>"

    def __init__(self, max_len: int = 12):
        check_count("max_len", max_len, "words a caption may have")
        self.vocab = [self.PAD, *all_words()]
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_len = max_len

    def __len__(self) -> int:
        return len(self.vocab)

    def words(self, caption: str) -> list:
        words = caption.lower().split()
        unknown = [w for w in words if w not in self.index or w == self.PAD]
        if unknown:
            raise ValueError(
                f"unknown word {unknown[0]!r} in caption {caption!r}; valid words are: {' '.join(self.vocab[1:])}"
            )
        if len(words) > self.max_len:
            raise ValueError(f"caption {caption!r} has {len(words)} words; at most {self.max_len} fit.")
        return words

    def encode(self, captions) -> tuple:
        if isinstance(captions, str):
            captions = [captions]
        if not isinstance(captions, (list, tuple)) or not all(isinstance(c, str) for c in captions):
            raise ValueError(f"captions must be a caption string or a list of them, got {captions!r:.60}.")
        ids = torch.zeros(len(captions), self.max_len, dtype=torch.long)
        for i, caption in enumerate(captions):
            words = self.words(caption)
            ids[i, : len(words)] = torch.tensor([self.index[w] for w in words], dtype=torch.long)
        return ids, ids != 0

    def decode(self, ids: torch.Tensor) -> list:
        """(B, L) ids -> captions (padding dropped)."""
        if not isinstance(ids, torch.Tensor) or ids.ndim != 2 or ids.is_floating_point():
            got = (tuple(ids.shape), str(ids.dtype)) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"ids must be an integer tensor (B, L) from Tokenizer.encode, got {got}.")
        if len(ids) and not (0 <= ids.min() and ids.max() < len(self.vocab)):
            raise ValueError(f"ids must lie in 0..{len(self.vocab) - 1} (this vocabulary), got {ids.min().item()} "
                             f"to {ids.max().item()}.")
        return [" ".join(self.vocab[i] for i in row.tolist() if i != 0) for row in ids]
