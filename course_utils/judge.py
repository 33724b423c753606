"""The judge: a small detector that reads every object of a Shapes image, and its training.

The judge is fully convolutional with stride 4: every location predicts "an object is centred here"
and that object's shape, colour and size, so it reads 32x32 and 64x64 images alike (CenterNet in
miniature). Reading the strongest location in each 3x3 grid cell gives the scene back as records,
which `metrics` compares with the captions.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoint import load_model
from .config import SEEDS, stream_seed
from .data import COLOURS, SHAPES, SIZES, check_count, check_size, float_images, render_shapes, to_float
from .vae import check_training, load_vae

JUDGE_CONFIG = {"width": 48}
STRIDE = 4
ATTRIBUTES = {"shape": SHAPES, "colour": tuple(COLOURS), "size": SIZES}


class Judge(nn.Module):
    """images (B, 3, H, W) in [-1, 1] -> dense predictions at stride 4.

    forward returns {"objectness": (B, H/4, W/4) logits, "shape": (B, 4, H/4, W/4), "colour": (B, 8, ...),
    "size": (B, 2, ...)}; features(images) -> (B, 2 * width) mean-pooled features for the Frechet distance.
    """

    def __init__(self, width: int = 48):
        super().__init__()
        self.config = {"width": width}
        w = width
        self.backbone = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(w, w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Conv2d(2 * w, 1 + len(SHAPES) + len(COLOURS) + len(SIZES), 1)

    def forward(self, images):
        out = self.head(self.backbone(images))  # (B, 15, H/4, W/4)
        obj, shape, colour, size = out.split([1, len(SHAPES), len(COLOURS), len(SIZES)], dim=1)
        return {"objectness": obj[:, 0], "shape": shape, "colour": colour, "size": size}

    @classmethod
    def from_config(cls, config: dict) -> "Judge":
        return cls(**config)

    @torch.no_grad()
    def features(self, images):
        return self.backbone(images).mean((2, 3))  # (B, 2w)


def _targets(records: list, size: int) -> dict:
    """Dense training targets at stride 4.

    objectness (B, s, s): 1 at the location holding an object's centre. Class ids (B, s, s): each object's
    shape, colour and size at every location within 5 px of its centre (-1 elsewhere), so the attributes
    read at a location next to the centre are right too.
    """
    s = size // STRIDE
    centres = (torch.arange(s) + 0.5) * STRIDE  # pixel centre of each location
    target = {"objectness": torch.zeros(len(records), s, s)}
    for name in ATTRIBUTES:
        target[name] = torch.full((len(records), s, s), -1, dtype=torch.long)
    for i, rec in enumerate(records):
        for o in rec["objects"]:
            target["objectness"][i, int(o["y"] // STRIDE), int(o["x"] // STRIDE)] = 1
            near = (centres[:, None] - o["y"]) ** 2 + (centres[None, :] - o["x"]) ** 2 < 25  # (s, s)
            for name, values in ATTRIBUTES.items():
                target[name][i][near] = values.index(o[name])
    return target


def judge_loss(judge: Judge, images: torch.Tensor, records: list) -> torch.Tensor:
    pred, target = judge(images), _targets(records, images.shape[-1])
    loss = F.binary_cross_entropy_with_logits(pred["objectness"], target["objectness"], pos_weight=torch.tensor(5.0))
    for name in ATTRIBUTES:
        loss = loss + F.cross_entropy(pred[name], target[name], ignore_index=-1)
    return loss


def _cell_of_location(n_locations: int, size: int) -> torch.Tensor:
    """Grid row (or column) of each stride-4 location, by the pixel at its centre."""
    centres = (torch.arange(n_locations) + 0.5) * STRIDE
    return (centres // (size / 3)).long().clamp(max=2)


@torch.no_grad()
def read_scenes(judge: Judge, images: torch.Tensor, batch_size: int = 500) -> dict:
    """What the judge sees in each 3x3 grid cell.

    Returns {"present": (B, 3, 3) bool, "shape" / "colour" / "size": (B, 3, 3) class ids}.
    """
    images = float_images(images)
    if images.shape[-1] % 16 or images.shape[-1] != images.shape[-2] or len(images) == 0:
        raise ValueError(f"the judge reads images (B, 3, H, W), B >= 1, with H = W a multiple of 16, got "
                         f"{tuple(images.shape)}.")
    check_count("batch_size", batch_size)
    device = next(judge.parameters()).device
    preds = [judge(images[i : i + batch_size].to(device)) for i in range(0, len(images), batch_size)]
    pred = {k: torch.cat([p[k] for p in preds]).cpu() for k in preds[0]}
    b, s = pred["objectness"].shape[0], pred["objectness"].shape[-1]
    cell = _cell_of_location(s, images.shape[-1])
    cell_id = (cell[:, None] * 3 + cell[None, :]).flatten()  # (s*s,) grid cell of each location
    score = pred["objectness"].flatten(1)  # (B, s*s)
    out = {"present": torch.zeros(b, 9, dtype=torch.bool)}
    best = torch.zeros(b, 9, dtype=torch.long)
    for c in range(9):
        masked = score.masked_fill(cell_id[None] != c, float("-inf"))
        value, best[:, c] = masked.max(1)
        out["present"][:, c] = value > 0
    for name in ATTRIBUTES:
        logits = pred[name].flatten(2)  # (B, K, s*s)
        picked = logits.gather(2, best[:, None, :].expand(-1, logits.shape[1], -1))  # (B, K, 9)
        out[name] = picked.argmax(1)
    return {k: v.view(b, 3, 3) for k, v in out.items()}


def scene_objects(scenes: dict, i: int) -> list:
    """The objects the judge read in image i, as records {"shape", "colour", "size", "row", "col"}."""
    objects = []
    for r, c in scenes["present"][i].nonzero().tolist():
        objects.append({"row": r, "col": c, **{k: v[scenes[k][i, r, c].item()] for k, v in ATTRIBUTES.items()}})
    return objects


def attribute_accuracy(judge: Judge, n: int = 1000, size: int = 32, seed: int = SEEDS["judge_test"]) -> dict:
    """Per-attribute accuracy of the judge on fresh real images (every object: present, shape, colour, size, cell).
    n: how many images; size: their side, a multiple of 16."""
    n, size = check_count("n", n), check_size(size)
    batch = render_shapes(n, seed=seed, size=size, mode="mixed")
    scenes = read_scenes(judge, batch.images)
    hits = {name: 0 for name in ("present", *ATTRIBUTES)}
    total, empty_ok = 0, 0
    for i, rec in enumerate(batch.records):
        for o in rec["objects"]:
            total += 1
            r, c = o["row"], o["col"]
            hits["present"] += scenes["present"][i, r, c].item()
            for name, values in ATTRIBUTES.items():
                hits[name] += values[scenes[name][i, r, c].item()] == o[name]
        empty_ok += scenes["present"][i].sum().item() == len(rec["objects"])
    acc = {name: h / total for name, h in hits.items()}
    acc["count"] = empty_ok / n
    return acc


def load_judge(device="cpu") -> Judge:
    """The shipped judge (data/judge.pt), sha256-verified, in eval mode."""
    return load_model("judge", device)


def train_judge(steps: int = 3000, batch_size: int = 64, lr: float = 2e-3,
                seed: int = SEEDS["judge_training"]) -> Judge:
    """Train on fresh images of every mode at 32x32 and 64x64; half the batches pass through the VAE,
    so the judge also reads the slightly soft images that generators decode."""
    check_training(steps, batch_size, lr, 2)
    torch.manual_seed(seed)
    vae, judge = load_vae(), Judge(**JUDGE_CONFIG)
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    bar = tqdm(range(steps), desc="judge")
    for step in bar:
        size = 64 if step % 3 == 2 else 32
        mode = ("mixed", "pair", "mixed", "single")[step % 4]
        batch = render_shapes(batch_size if size == 32 else batch_size // 2, seed=stream_seed(seed, step),
                              size=size, mode=mode)
        images = to_float(batch.images)
        if step % 2:
            latents = vae.encode(images)
            images = vae.decode(latents + 0.1 * torch.rand(()) * torch.randn_like(latents))
        loss = judge_loss(judge, images, batch.records)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"the judge's training loss is not finite at step {step}; lower lr={lr:g}.")
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return judge.eval()
