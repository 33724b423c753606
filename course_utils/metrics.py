"""Scores of a generator, built on the judge's reading of its images: prompt adherence, the two-object funnel,
pair consistency, the Frechet distance of judge features, and `evaluate`, which samples and scores a model; one
score read off the latents directly, `frequency_errors`; and one read off the images' spectrum, `stripe_energy`.
"""

import torch
import torch.nn.functional as F

from .config import SEEDS
from .data import MODES, check_count, check_mode, check_size, float_images, relation_holds, render_shapes
from .flow import check_sampler, generate, in_pixel_space
from .judge import ATTRIBUTES, Judge, load_judge, read_scenes, scene_objects


def matches_record(objects: list, record: dict) -> bool:
    """Whether the objects read from an image say what the record's caption says (and nothing more)."""
    want = record["objects"]
    if len(objects) != len(want):
        return False
    if record["mode"] == "single":
        o, w = objects[0], want[0]
        return all(o[k] == w[k] for k in ("shape", "colour", "size", "row", "col"))
    if record["mode"] in ("pair", "twins"):
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
    _check_records(records, len(scenes["present"]) if isinstance(scenes, dict) and "present" in scenes else None)
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


def _check_records(records, n: int = None) -> None:
    """records: a non-empty list of scene records (dicts with "mode" and "objects", as render_shapes gives), n if
    given."""
    if not isinstance(records, (list, tuple)) or not records or not all(
            isinstance(r, dict) and "mode" in r and "objects" in r for r in records):
        raise ValueError(f"records must be a non-empty list of scene records (dicts with 'mode' and 'objects', e.g. "
                         f"render_shapes(...).records), got {records!r:.60}.")
    if n is not None and len(records) != n:
        raise ValueError(f"records must hold one scene record per image: {n} images, got {len(records)} records.")


def _adherence(scenes: dict, records: list) -> float:
    return sum(matches_record(scene_objects(scenes, i), rec) for i, rec in enumerate(records)) / len(records)


def _pair_consistency(scenes: dict) -> float:
    good = 0
    for i in range(len(scenes["present"])):
        objects = scene_objects(scenes, i)
        good += len(objects) == 2 and all(objects[0][k] == objects[1][k] for k in ATTRIBUTES)
    return good / len(scenes["present"])


# squared distance between two grid cells -> the distance in cells, as the long-range comparison labels it
CELL_DISTANCES = {1: "1", 2: "1.4", 4: "2", 5: "2.2", 8: "2.8"}


def consistency_by_distance(scenes: dict) -> dict:
    """Pair consistency by how far apart the judge finds the two objects: {distance label (CELL_DISTANCES): (images
    whose two objects match in shape, colour and size, images with exactly two objects at that distance)}."""
    counts = {label: [0, 0] for label in CELL_DISTANCES.values()}
    for i in range(len(scenes["present"])):
        objects = scene_objects(scenes, i)
        if len(objects) == 2:
            a, b = objects
            label = CELL_DISTANCES[(a["row"] - b["row"]) ** 2 + (a["col"] - b["col"]) ** 2]
            counts[label][0] += all(a[k] == b[k] for k in ATTRIBUTES)
            counts[label][1] += 1
    return {label: tuple(c) for label, c in counts.items()}


def prompt_adherence(images: torch.Tensor, records: list, judge: Judge = None) -> float:
    """Fraction of images whose every object the judge reads as the caption says."""
    _check_records(records, len(images))
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
    for name, images in (("real", real), ("fake", fake)):
        images = float_images(images, name)
        if len(images) < 2:
            raise ValueError(f"{name} must hold at least 2 images to fit a Gaussian (hundreds for a stable distance), "
                             f"got {len(images)}.")
        device = next(judge.parameters()).device
        feats.append(torch.cat([judge.features(images[i : i + 500].to(device)).cpu()
                                for i in range(0, len(images), 500)]).double())
    (mu1, mu2), (s1, s2) = [f.mean(0) for f in feats], [torch.cov(f.T) for f in feats]
    root = _sqrtm_psd(s1)
    cross = torch.linalg.eigvalsh(root @ s2 @ root).clamp(min=0).sqrt().sum()
    return ((mu1 - mu2).square().sum() + s1.trace() + s2.trace() - 2 * cross).item()


def evaluate(model, n: int = 500, mode: str = "single", steps: int = 25, cfg_scale: float = 1.0, seed: int = 0,
             size: int = 32, vae=None, judge: Judge = None, sampler: str = "euler") -> dict:
    """Generate n images for fresh captions of one mode and score them.

    Returns {"adherence", "frechet", "pair_consistency" (pair mode only), "images", "captions", "records",
    "scenes" (the judge's reading of the images, for two_object_funnel)}.
    The captions come from seed SEEDS["eval_prompts"] + seed, never used in training; the Frechet distance is
    against n real images of the same mode (seed SEEDS["eval_real"] + seed). mode: "single", "relation" or "pair";
    size: the image side, a multiple of 16 (the latents are size / 4; a pixel-space model, flow.in_pixel_space,
    samples the images directly and needs no vae); sampler: "euler" or "heun" (flow.SAMPLERS).
    """
    n, size, mode = check_count("n", n), check_size(size), check_mode(mode, MODES)
    check_sampler(sampler)
    judge = judge or load_judge()
    prompts = render_shapes(n, seed=SEEDS["eval_prompts"] + seed, size=size, mode=mode)
    side = size if in_pixel_space(model) else size // 4  # a pixel model samples the image itself
    images = generate(model, prompts.captions, vae, steps, cfg_scale, seed, latent_size=side, sampler=sampler)
    real = render_shapes(n, seed=SEEDS["eval_real"] + seed, size=size, mode=mode).images
    scenes = read_scenes(judge, images)  # read once, scored twice
    result = {"adherence": _adherence(scenes, prompts.records), "frechet": frechet_distance(real, images, judge),
              "images": images, "captions": prompts.captions, "records": prompts.records, "scenes": scenes}
    if mode in ("pair", "twins"):
        result["pair_consistency"] = _pair_consistency(scenes)
    return result


@torch.no_grad()
def frequency_errors(model, latents: torch.Tensor, cond, t: float = 0.7, seed: int = 0, batch_size: int = 500) -> dict:
    """The error of the one-step clean estimate x1_hat = x_t + (1 - t) v at time t, split by frequency.

    latents (N, C, H, W) with H, W even, cond (ids, mask) each (N, L). low: the mean squared error of the 2x2 block
    means (where and what the objects are); high: of what is left (edges and detail). Fixed noise from `seed`.
    Returns {"low_freq_error", "high_freq_error"}.
    """
    if not 0 < t < 1:
        raise ValueError(f"t must lie in (0, 1), got {t!r}.")
    if latents.ndim != 4 or latents.shape[-1] % 2 or latents.shape[-2] % 2:
        raise ValueError(f"latents must be (N, C, H, W) with even H and W, got {tuple(latents.shape)}.")
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    low_sum = high_sum = 0.0
    for i in range(0, len(latents), batch_size):
        x1 = latents[i : i + batch_size]
        x0 = torch.randn(x1.shape, generator=gen)
        x1, x0 = x1.to(device), x0.to(device)
        x_t = (1 - t) * x0 + t * x1
        v = model(x_t, torch.full((len(x1),), t, device=device), tuple(c[i : i + batch_size].to(device) for c in cond))
        err = x_t + (1 - t) * v - x1
        low = F.interpolate(F.avg_pool2d(err, 2), scale_factor=2, mode="nearest")
        low_sum += low.square().sum().item()
        high_sum += (err - low).square().sum().item()
    n = latents.numel()
    return {"low_freq_error": low_sum / n, "high_freq_error": high_sum / n}


def _spectra(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """images (N, 3, H, W), uint8 or float in [-1, 1], H and W at least 4 -> (N, H, W) float64 power of the 2D FFT
    of each image, summed over the channels, with the mean (the DC bin) removed: unshifted, ky along dim 1."""
    x = float_images(images, name)
    if min(x.shape[-2:]) < 4:
        raise ValueError(f"{name} must be at least 4x4 pixels to have a spectrum off its axes, got "
                         f"{tuple(x.shape[-2:])}.")
    x = x.double().cpu()
    x = x - x.mean(dim=(-2, -1), keepdim=True)  # (N, 3, H, W)
    power = torch.fft.fft2(x).abs().square().sum(1)  # (N, H, W)
    power[:, 0, 0] = 0.0  # the DC bin: zero up to rounding after the mean is removed
    return power


FLAT = 1e-10  # pixel variance (summed over the channels) below which an image counts as flat: it has no structure


def stripe_energy(images: torch.Tensor) -> torch.Tensor:
    """The share of each image's structure that lies along the image axes: of its non-DC spectral power (2D FFT of
    each channel, summed over the channels), the share on the lines kx = 0 and ky = 0. images (N, 3, H, W), uint8 or
    float in [-1, 1], H and W at least 4 -> (N,) float64 in [0, 1]; a flat image (no structure) scores 0.

    Why this measure: by Parseval, the power on the line ky = 0 is the variance of the column means (a pattern that
    is constant down each column: vertical stripes), and that on kx = 0 the variance of the row means (horizontal
    stripes), so the share is (var(row means) + var(column means)) / var(pixels), channels pooled. Pure stripes
    score 1, a diagonal pattern 0, isotropic noise (H + W - 2) / (H W - 1), 0.03 at 64 px. Structure that lines up
    along a row or a column raises it: k equal objects in one row add k^2 to the power of the row means, k objects
    in k different rows only k. That is the artifact axial RoPE is suspected of, since its attention scores are
    f(row offset) + g(column offset). Shapes images have axis-aligned squares and objects on a 3x3 grid, so read
    the score against real images of the same size (`render_shapes(n, seed, size=64).images`), not against 0.
    """
    power = _spectra(images)  # (N, H, W)
    total = power.sum((-2, -1))  # (N,)
    on_axes = power[:, 0, :].sum(-1) + power[:, 1:, 0].sum(-1)  # (N,) the DC bin counted once (it is 0)
    flat = total <= FLAT * power.shape[-1] ** 2 * power.shape[-2] ** 2  # total power = (H W)^2 var
    return torch.where(flat, torch.zeros_like(total), on_axes / total.clamp_min(1e-300))


def power_spectrum(images: torch.Tensor) -> torch.Tensor:
    """The mean over images of each image's non-DC power spectrum (as in stripe_energy), each normalised to sum 1 so
    that every image weighs the same, shifted so that frequency 0 sits at (H // 2, W // 2): (H, W) float64. Its sum
    along the two lines through the centre is the mean stripe_energy of the images (flat images count as 0)."""
    power = _spectra(images)  # (N, H, W)
    total = power.sum((-2, -1), keepdim=True)  # (N, 1, 1)
    shares = torch.where(total > FLAT * power.shape[-1] ** 2 * power.shape[-2] ** 2, power / total.clamp_min(1e-300),
                         torch.zeros_like(power))
    return torch.fft.fftshift(shares.mean(0), dim=(-2, -1))  # (H, W)
