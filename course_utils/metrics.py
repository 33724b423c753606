"""The judge: a small detector that reads every object of a Shapes image, and the scores built on it.

The judge is fully convolutional with stride 4: every location predicts "an object is centred here"
and that object's shape, colour and size, so it reads 32x32 and 64x64 images alike (CenterNet in
miniature). Reading the strongest location in each 3x3 grid cell gives the scene back as records,
which `prompt_adherence` compares with the caption's; `frechet_distance` compares feature statistics.
"""

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoint import load_shipped, register_shipped, save_checkpoint
from .config import DATA_DIR
from .data import COLOURS, SHAPES, SIZES, Tokenizer, relation_holds, render_shapes, to_float
from .flow import euler_sample
from .vae import load_vae

JUDGE_FILE = "judge.pt"
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
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] % 16:
        raise ValueError(f"the judge reads images (B, 3, H, W) with H = W a multiple of 16, got {tuple(images.shape)}.")
    if images.dtype == torch.uint8:
        images = to_float(images)
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


def matches_record(objects: list, record: dict) -> bool:
    """Whether the objects read from an image say what the record's caption says (and nothing more)."""
    want = record["objects"]
    if len(objects) != len(want):
        return False
    if record["mode"] == "single":
        o, w = objects[0], want[0]
        return all(o[k] == w[k] for k in ("shape", "colour", "size", "row", "col"))
    if record["mode"] == "pair":
        return all(o[k] == want[0][k] for o in objects for k in ("shape", "colour", "size"))
    a, b = want
    for x, y in (objects, objects[::-1]):
        same = all(x[k] == a[k] and y[k] == b[k] for k in ("shape", "colour"))
        if same and relation_holds(record["relation"], x, y):
            return True
    return False


def two_object_funnel(scenes: dict, records: list) -> dict:
    """Where two-object (relation) images go wrong, as fractions of all images, each step a subset of the last:
    "two objects" read; both "colours" of the caption among them; both "shapes" too; "bound": one object has the
    first colour and shape, the other the second's; "relation" holds as well (this last one is the adherence)."""
    if any(rec["mode"] != "relation" for rec in records):
        raise ValueError("two_object_funnel scores relation-mode records only (captions with two objects).")
    counts = dict.fromkeys(("two objects", "colours", "shapes", "bound", "relation"), 0)
    for i, rec in enumerate(records):
        objects, (a, b) = scene_objects(scenes, i), rec["objects"]
        if len(objects) != 2:
            continue
        orders = (objects, objects[::-1])
        checks = {
            "two objects": True,
            "colours": any(x["colour"] == a["colour"] and y["colour"] == b["colour"] for x, y in orders),
            "shapes": any(x["shape"] == a["shape"] and y["shape"] == b["shape"] for x, y in orders),
            "bound": any(all(x[k] == a[k] and y[k] == b[k] for k in ("colour", "shape")) for x, y in orders),
            "relation": matches_record(objects, rec),
        }
        for name in counts:  # a funnel: stop at the first check that fails
            if not checks[name]:
                break
            counts[name] += 1
    return {name: count / len(records) for name, count in counts.items()}


def _adherence(scenes: dict, records: list) -> float:
    return sum(matches_record(scene_objects(scenes, i), rec) for i, rec in enumerate(records)) / len(records)


def _pair_consistency(scenes: dict) -> float:
    good = 0
    for i in range(len(scenes["present"])):
        objects = scene_objects(scenes, i)
        good += len(objects) == 2 and all(objects[0][k] == objects[1][k] for k in ATTRIBUTES)
    return good / len(scenes["present"])


def prompt_adherence(images: torch.Tensor, records: list, judge: Judge = None) -> float:
    """Fraction of images whose every object the judge reads as the caption says."""
    return _adherence(read_scenes(judge or load_judge(), images), records)


def pair_consistency(images: torch.Tensor, judge: Judge = None) -> float:
    """Fraction of pair-mode images in which the judge finds exactly two objects that match each other."""
    return _pair_consistency(read_scenes(judge or load_judge(), images))


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(m)
    return vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(real: torch.Tensor, fake: torch.Tensor, judge: Judge = None) -> float:
    """Frechet distance between Gaussians fitted to the judge features of two image sets (FID's formula)."""
    judge = judge or load_judge()
    feats = []
    for images in (real, fake):
        images = to_float(images) if images.dtype == torch.uint8 else images
        device = next(judge.parameters()).device
        feats.append(torch.cat([judge.features(images[i : i + 500].to(device)).cpu()
                                for i in range(0, len(images), 500)]).double())
    (mu1, mu2), (s1, s2) = [f.mean(0) for f in feats], [torch.cov(f.T) for f in feats]
    root = _sqrtm_psd(s1)
    cross = torch.linalg.eigvalsh(root @ s2 @ root).clamp(min=0).sqrt().sum()
    return ((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * cross).item()


def attribute_accuracy(judge: Judge, n: int = 1000, size: int = 32, seed: int = 20_000) -> dict:
    """Per-attribute accuracy of the judge on fresh real images (every object: present, shape, colour, size, cell)."""
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
    ckpt = load_shipped(JUDGE_FILE)
    judge = Judge(**ckpt["config"])
    judge.load_state_dict(ckpt["state_dict"])
    return judge.eval().to(device)


def train_judge(steps: int = 3000, batch_size: int = 64, lr: float = 2e-3, seed: int = 1) -> Judge:
    """Train on fresh images of every mode at 32x32 and 64x64; half the batches pass through the VAE,
    so the judge also reads the slightly soft images that generators decode."""
    torch.manual_seed(seed)
    vae, judge = load_vae(), Judge(**JUDGE_CONFIG)
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    bar = tqdm(range(steps), desc="judge")
    for step in bar:
        size = 64 if step % 3 == 2 else 32
        mode = ("mixed", "pair", "mixed", "single")[step % 4]
        batch = render_shapes(batch_size if size == 32 else batch_size // 2, seed=seed * 1_000_003 + step,
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
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return judge.eval()


# ---- scoring a generator ------------------------------------------------------------------------------


@torch.no_grad()
def generate(model, captions: list, vae=None, steps: int = 25, cfg_scale: float = 1.0, seed: int = 0,
             latent_size: int = 8, batch_size: int = 250) -> torch.Tensor:
    """Sample one image per caption with Euler steps (and CFG against model.null_condition()),
    decoded by the VAE: (n, 3, 4 * latent_size, 4 * latent_size) in [-1, 1]."""
    vae = vae or load_vae()
    device = next(model.parameters()).device
    ids, mask = Tokenizer(getattr(model, "max_len", 12)).encode(captions)
    noise = torch.randn(len(captions), 4, latent_size, latent_size, generator=torch.Generator().manual_seed(seed))
    null = tuple(c.to(device) for c in model.null_condition()) if cfg_scale != 1.0 else None
    model.eval()
    images = []
    for i in range(0, len(captions), batch_size):
        cond = (ids[i : i + batch_size].to(device), mask[i : i + batch_size].to(device))
        latents = euler_sample(model, noise[i : i + batch_size].to(device), cond, steps, null, cfg_scale)
        images.append(vae.decode(latents.float().cpu()))
    return torch.cat(images)


def evaluate(model, n: int = 500, mode: str = "single", steps: int = 25, cfg_scale: float = 1.0, seed: int = 0,
             size: int = 32, vae=None, judge: Judge = None) -> dict:
    """Generate n images for fresh captions of one mode and score them.

    Returns {"adherence", "frechet", "pair_consistency" (pair mode only), "images", "captions", "records",
    "scenes" (the judge's reading of the images, for two_object_funnel)}.
    The captions come from seed 900_000 + seed, never used in training; the Frechet distance is against
    n real images of the same mode.
    """
    judge = judge or load_judge()
    prompts = render_shapes(n, seed=900_000 + seed, size=size, mode=mode)
    images = generate(model, prompts.captions, vae, steps, cfg_scale, seed, latent_size=size // 4)
    real = render_shapes(n, seed=950_000 + seed, size=size, mode=mode).images
    scenes = read_scenes(judge, images)  # read once, scored twice
    result = {"adherence": _adherence(scenes, prompts.records), "frechet": frechet_distance(real, images, judge),
              "images": images, "captions": prompts.captions, "records": prompts.records, "scenes": scenes}
    if mode == "pair":
        result["pair_consistency"] = _pair_consistency(scenes)
    return result


def main():
    parser = argparse.ArgumentParser(description="Retrain the course judge and write data/judge.pt.")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    start = time.time()
    judge = train_judge(steps=args.steps, seed=args.seed)
    save_checkpoint(DATA_DIR / JUDGE_FILE, judge.state_dict(), JUDGE_CONFIG, step=args.steps)
    print(f"trained in {time.time() - start:.0f} s; sha256 {register_shipped(JUDGE_FILE)}")
    for size in (32, 64):
        acc = attribute_accuracy(judge, size=size)
        print(f"accuracy at {size}x{size}: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))


if __name__ == "__main__":
    main()
