"""Flow matching (Lipman et al., 2023; Liu et al., 2023), in the lecture's time direction.

t = 0 is pure noise x0 ~ N(0, I), t = 1 is data x1. The path is x_t = (1 - t) x0 + t x1, its velocity
v = x1 - x0, and sampling integrates dx/dt = v(x_t, t) from t = 0 to 1 (Euler: x_{t+dt} = x_t + v dt).
SD3 and Flux run time the other way (t = 1 is noise); only the sign conventions change.
"""

import math
import numbers
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from .data import Tokenizer, check_count
from .vae import load_vae

SCHEDULES = ("uniform", "logit_normal")


def _per_sample(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1), broadcastable against x."""
    return t.view(-1, *([1] * (x.ndim - 1)))


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def check_batch(x, t=None, name: str = "x", t_name: str = "t") -> None:
    """x a float tensor (B, ...) and t, if given, a float tensor (B,): one time per sample of x."""
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or not x.is_floating_point():
        got = f"{_shape(x)} of {x.dtype}" if isinstance(x, torch.Tensor) else _shape(x)
        raise ValueError(f"{name} must be a float tensor (B, ...), got {got}.")
    if t is not None and (not isinstance(t, torch.Tensor) or t.shape != x.shape[:1] or not t.is_floating_point()):
        got = f"{_shape(t)} of {t.dtype}" if isinstance(t, torch.Tensor) else _shape(t)
        raise ValueError(f"{t_name} must be a float tensor ({x.shape[0]},), one time per sample of {name} "
                         f"{tuple(x.shape)}, got {got}.")


def interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x0 + t x1 for x0, x1 (B, ...) of one shape and t of shape (B,)."""
    check_batch(x1, t, "x1")
    if not isinstance(x0, torch.Tensor) or x0.shape != x1.shape:
        raise ValueError(f"x0 (noise) must have the shape of x1 {tuple(x1.shape)}, got {_shape(x0)}.")
    t = _per_sample(t, x1)
    return (1 - t) * x0 + t * x1


def velocity_target(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """The velocity of the straight path from x0 to x1."""
    return x1 - x0


def clean_estimate(x: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The data point x1 that a velocity v at (x_t, t) points to: x_t + (1 - t) v (exact on a straight path)."""
    check_batch(x, t)
    if not isinstance(v, torch.Tensor) or v.shape != x.shape:
        raise ValueError(f"v (the velocity) must have the shape of x {tuple(x.shape)}, got {_shape(v)}.")
    return x + (1 - _per_sample(t, x)) * v


def noise_estimate(x: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The noise x0 that a velocity v at (x_t, t) comes from: x_t - t v. DDPM's models predict this (epsilon)."""
    return clean_estimate(x, t, v) - v  # x1_hat - v = x_t + (1 - t) v - v


def score_estimate(x: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The score grad log p_t(x_t) that a velocity implies: -x0_hat / (1 - t), for t < 1 (x_t given the data is
    Gaussian with std 1 - t around t x1). Score matching's models predict this."""
    if bool((_per_sample(t, x) >= 1).any()):
        raise ValueError("the score is defined for t < 1 (at t = 1 the path has no noise left).")
    return -noise_estimate(x, t, v) / (1 - _per_sample(t, x))


def time_grid(steps: int, device=None) -> torch.Tensor:
    """(steps + 1,) equally spaced times from 0 (noise) to 1 (data): the samplers' steps."""
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be at least 1 (a whole number of sampler steps), got {steps!r}.")
    return torch.linspace(0, 1, steps + 1, device=device)


def _random(draw, shape, generator: torch.Generator = None, device=None) -> torch.Tensor:
    """draw(shape) (torch.rand or torch.randn) on the generator's device, then on `device`: the same numbers for the
    same generator wherever the result goes, and no CPU round trip when generator and device agree."""
    source = generator.device if generator is not None else device
    return draw(shape, generator=generator, device=source).to(device)


def sample_timesteps(n: int, schedule: str = "uniform", generator: torch.Generator = None,
                     mean: float = 0.0, std: float = 1.0, device=None) -> torch.Tensor:
    """n training times in (0, 1) on `device`: uniform, or logit-normal (sigmoid of N(mean, std), SD3's choice)."""
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative integer number of times, got {n!r}.")
    if schedule == "uniform":
        return _random(torch.rand, (n,), generator, device)
    if schedule == "logit_normal":
        return torch.sigmoid(mean + std * _random(torch.randn, (n,), generator, device))
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}.")


def flow_matching_loss(model, x1: torch.Tensor, cond=None, generator: torch.Generator = None,
                       schedule: str = "uniform") -> torch.Tensor:
    """E_t,x0 || model(x_t, t, cond) - (x1 - x0) ||^2 (mean over all elements); x1: data latents (B, ...)."""
    check_batch(x1, name="x1")
    x0 = _random(torch.randn, x1.shape, generator, x1.device)
    t = sample_timesteps(x1.shape[0], schedule, generator, device=x1.device)
    return F.mse_loss(model(interpolate(x0, x1, t), t, cond).float(), velocity_target(x0, x1).float())


def drop_condition(cond, null_cond, p: float, generator: torch.Generator = None):
    """Replace each sample's condition by the null condition with probability p (CFG training).

    cond: a tensor (B, ...) or a tuple of such tensors; null_cond: the same structure with batch 1.
    """
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"the condition dropout p must be a probability in [0, 1], got {p!r}.")
    if cond is None or p == 0:
        return cond
    if null_cond is None:
        raise ValueError("condition dropout for classifier-free guidance needs a null condition.")
    first = cond[0] if isinstance(cond, tuple) else cond
    drop = _random(torch.rand, (first.shape[0],), generator, first.device) < p

    def mix(c, n):
        return torch.where(drop.view(-1, *([1] * (c.ndim - 1))), n.to(c.device).expand_as(c), c)

    if isinstance(cond, tuple):
        return tuple(mix(c, n) for c, n in zip(cond, null_cond))
    return mix(cond, null_cond)


def guided_velocity(model, x: torch.Tensor, t: torch.Tensor, cond=None, null_cond=None,
                    cfg_scale: float = 1.0) -> torch.Tensor:
    """Classifier-free guidance: v_null + s (v_cond - v_null); s = 1 is the plain conditional field."""
    if isinstance(cfg_scale, bool) or not isinstance(cfg_scale, (int, float)) or not math.isfinite(cfg_scale):
        raise ValueError(f"cfg_scale must be a finite number (1: no guidance, 2: the course's default), "
                         f"got {cfg_scale!r}.")
    v = model(x, t, cond)
    if cfg_scale == 1.0:
        return v
    if null_cond is None:
        raise ValueError(f"cfg_scale={cfg_scale} needs a null condition (null_cond) to guide against.")
    check_null_condition(null_cond, cond, x.shape[0])
    v_null = model(x, t, _expand(null_cond, x.shape[0]))
    return v_null + cfg_scale * (v - v_null)


def check_null_condition(null_cond, cond, batch: int) -> None:
    """null_cond has cond's structure (a tensor, or a tuple of as many tensors) with batch 1 or `batch`, each part
    the shape of cond's after the batch and of its dtype (model.null_condition() gives one)."""
    if cond is None:
        raise ValueError("guidance against null_cond needs a condition (cond) to guide towards, got cond=None.")
    parts = cond if isinstance(cond, (tuple, list)) else (cond,)
    nulls = null_cond if isinstance(null_cond, (tuple, list)) else (null_cond,)
    want = " and ".join(f"(1, {', '.join(map(str, c.shape[1:]))}) {c.dtype}" if isinstance(c, torch.Tensor) else "?"
                        for c in parts)
    ok = len(nulls) == len(parts) and all(
        isinstance(n, torch.Tensor) and isinstance(c, torch.Tensor) and n.ndim == c.ndim and n.shape[0] in (1, batch)
        and n.shape[1:] == c.shape[1:] and n.dtype == c.dtype for n, c in zip(nulls, parts))
    if not ok:
        got = " and ".join(f"{_shape(n)} {getattr(n, 'dtype', '')}".strip() for n in nulls)
        raise ValueError(f"null_cond must be like cond with batch 1, {want} (model.null_condition() gives it), "
                         f"got {got}.")


def check_noise(noise) -> None:
    if not isinstance(noise, torch.Tensor) or noise.ndim < 1 or not noise.is_floating_point():
        got = f"{_shape(noise)} of {noise.dtype}" if isinstance(noise, torch.Tensor) else _shape(noise)
        raise ValueError(f"noise must be a float tensor (B, ...) drawn from N(0, I), got {got}.")


def _expand(cond, n: int):
    if isinstance(cond, tuple):
        return tuple(c.expand(n, *c.shape[1:]) for c in cond)
    return cond.expand(n, *cond.shape[1:])


@torch.no_grad()
def euler_sample(model, noise: torch.Tensor, cond=None, steps: int = 25, null_cond=None,
                 cfg_scale: float = 1.0, return_trajectory: bool = False):
    """Integrate from t = 0 (noise) to t = 1 (data) with `steps` Euler steps.

    Returns the final x (B, ...) or, with return_trajectory, a tensor (steps + 1, B, ...) of every x_t.
    """
    check_noise(noise)
    x, trajectory = noise, [noise]
    times = time_grid(steps, noise.device)
    for t0, t1 in zip(times[:-1], times[1:]):
        t = t0.expand(x.shape[0])
        x = x + guided_velocity(model, x, t, cond, null_cond, cfg_scale) * (t1 - t0)
        trajectory.append(x)
    return torch.stack(trajectory) if return_trajectory else x


@torch.no_grad()
def heun_sample(model, noise: torch.Tensor, cond=None, steps: int = 25, null_cond=None,
                cfg_scale: float = 1.0, return_trajectory: bool = False):
    """Heun's second-order method: an Euler predictor, then the average of the two slopes (2 calls a step)."""
    check_noise(noise)
    x, trajectory = noise, [noise]
    times = time_grid(steps, noise.device)
    for t0, t1 in zip(times[:-1], times[1:]):
        dt = t1 - t0
        v0 = guided_velocity(model, x, t0.expand(x.shape[0]), cond, null_cond, cfg_scale)
        x_pred = x + v0 * dt
        v1 = guided_velocity(model, x_pred, t1.expand(x.shape[0]), cond, null_cond, cfg_scale)
        x = x + 0.5 * (v0 + v1) * dt
        trajectory.append(x)
    return torch.stack(trajectory) if return_trajectory else x


SAMPLERS = {"euler": euler_sample, "heun": heun_sample}  # Heun calls the model twice a step


def check_sampler(sampler) -> str:
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {tuple(SAMPLERS)}, got {sampler!r}.")
    return sampler


@contextmanager
def evaluating(model):
    """Run a block with `model` in eval mode, then give it back the train/eval mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def caption_batch(model, captions: list, seed: int = 0, latent_size: int = None) -> tuple:
    """What sampling `captions` with caption-conditional `model` starts from: noise (B, C, s, s) drawn from `seed`
    on the CPU (the same bytes on every device) and the captions' (ids, mask), each (B, max_len). C, max_len and the
    default side s come from model.config; s is the side of what the model samples (for a pixel-space model, the
    image's)."""
    if (isinstance(captions, str) or not isinstance(captions, (list, tuple)) or not captions
            or not all(isinstance(c, str) for c in captions)):
        raise ValueError(f"captions must be a non-empty list of strings (wrap one caption in a list), got "
                         f"{captions!r:.60}.")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    if latent_size is not None:
        check_count("latent_size", latent_size, "latent pixels per side (images are 4x it; a pixel model's: 1x)")
    cfg = model.config
    side = latent_size or cfg.input_size
    noise = torch.randn(len(captions), cfg.in_channels, side, side, generator=torch.Generator().manual_seed(seed))
    return noise, Tokenizer(cfg.max_len).encode(captions)


@torch.no_grad()
def sample_trajectory(model, captions: list, steps: int = 25, cfg_scale: float = 1.0, seed: int = 0,
                      latent_size: int = None) -> torch.Tensor:
    """Euler sampling of caption-conditional `model` with CFG against model.null_condition(), every step kept:
    (steps + 1, B, C, s, s) latents (see caption_batch). The model's train/eval mode is kept."""
    noise, (ids, mask) = caption_batch(model, captions, seed, latent_size)
    device = next(model.parameters()).device
    null = model.null_condition() if cfg_scale != 1.0 else None
    with evaluating(model):
        return euler_sample(model, noise.to(device), (ids.to(device), mask.to(device)), steps, null, cfg_scale,
                            return_trajectory=True)


def in_pixel_space(model) -> bool:
    """Whether a caption-conditional denoiser samples RGB pixels (config.in_channels == 3) rather than VAE latents
    (4 channels): its samples are the images, and no VAE decodes them (the latent_vs_pixel experiment's pixel DiTs)."""
    return model.config.in_channels == 3


def pixel_images(samples: torch.Tensor) -> torch.Tensor:
    """A pixel-space model's samples (B, 3, H, W) -> images on the CPU, clamped to [-1, 1] as VAE.decode clamps its
    output (the judge reads images in that range)."""
    if not torch.isfinite(samples).all():
        raise ValueError("samples must be finite, got NaN or inf (did the sampler or the training diverge?).")
    return samples.float().clamp(-1, 1).cpu()


@torch.no_grad()
def generate(model, captions: list, vae=None, steps: int = 25, cfg_scale: float = 1.0, seed: int = 0,
             latent_size: int = None, batch_size: int = 250, sampler: str = "euler") -> torch.Tensor:
    """Sample one image per caption with `steps` steps of the sampler ("euler" or "heun", SAMPLERS; CFG against
    model.null_condition()), decoded by the VAE: (n, 3, 4 s, 4 s) in [-1, 1] (see caption_batch). A pixel-space
    model's samples are the images, (n, 3, s, s) clamped to [-1, 1]: it needs no VAE and `vae` is not used
    (in_pixel_space). The model's train/eval mode is kept."""
    check_count("batch_size", batch_size, "captions sampled at once")
    solve = SAMPLERS[check_sampler(sampler)]
    noise, (ids, mask) = caption_batch(model, captions, seed, latent_size)
    pixels = in_pixel_space(model)
    vae = None if pixels else vae or load_vae()
    device, vae_device = next(model.parameters()).device, None if pixels else next(vae.parameters()).device
    null = model.null_condition() if cfg_scale != 1.0 else None
    images = []
    with evaluating(model):
        for i in range(0, len(captions), batch_size):
            cond = (ids[i : i + batch_size].to(device), mask[i : i + batch_size].to(device))
            samples = solve(model, noise[i : i + batch_size].to(device), cond, steps, null, cfg_scale)
            images.append(pixel_images(samples) if pixels else vae.decode(samples.float().to(vae_device)).cpu())
    return torch.cat(images)


def gaussian_mixture_velocity(x: torch.Tensor, t: torch.Tensor, means: torch.Tensor, stds: torch.Tensor,
                              weights: torch.Tensor) -> torch.Tensor:
    """The exact flow-matching velocity E[x1 - x0 | x_t] when x1 is a Gaussian mixture.

    x: (B, D); t: (B,); means: (K, D); stds, weights: (K,). Isotropic components. Used to check the
    samplers and to show students a field that is known in closed form.
    """
    t = t.view(-1, 1, 1)  # (B, 1, 1)
    mu, s2 = means[None], (stds**2).view(1, -1, 1)  # (1, K, D), (1, K, 1)
    var = (1 - t) ** 2 + t**2 * s2  # (B, K, 1): variance of x_t within component k
    diff = x[:, None, :] - t * mu  # (B, K, D)
    d = x.shape[1]
    var = var[..., 0]  # (B, K)
    log_p = torch.log(weights)[None] - 0.5 * (diff**2).sum(-1) / var - 0.5 * d * torch.log(2 * math.pi * var)
    post = torch.softmax(log_p, dim=1)[..., None]  # (B, K, 1)
    v_k = mu + (t * s2 - (1 - t)) / var[..., None] * diff  # (B, K, D): E[v | x_t, k]
    return (post * v_k).sum(1)  # (B, D)
