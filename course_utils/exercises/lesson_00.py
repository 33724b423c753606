"""Lesson 00's exercises: scene records, how precise a denoiser must be, the Euler sampler, and steps against width."""

from dataclasses import replace
from functools import lru_cache

import torch

from ..config import SEEDS
from ..data import RELATIONS, relation_holds, render_shapes, to_float
from ..dit import dit_tiny
from ..flow import euler_sample, gaussian_mixture_velocity
from ..latents import load_latents
from ..train import LESSON_RUN, train
from ..vae import load_vae, psnr
from .base import Wrong, call, choice, exercise


@exercise("00.1", "true_relations", "a record's objects carry their grid cell as 'row' (0 = top) and 'col' (0 = left); "
          "'above' means a smaller row than the other object's.")
def check_true_relations(true_relations):
    for record in render_shapes(200, seed=SEEDS["exercises"] + 1, mode="relation").records:
        a, b = record["objects"]
        got = call(true_relations, record)
        expected = {r for r in RELATIONS if relation_holds(r, a, b)}
        if not isinstance(got, (set, frozenset, list, tuple)) or set(got) != expected:
            raise Wrong(f"for {record['relation']!r} with the first object at row {a['row']}, col {a['col']} and the "
                        f"second at row {b['row']}, col {b['col']}, you returned {got!r}; expected {sorted(expected)}.")
        if record["relation"] not in got:
            raise Wrong(f"the caption's own relation {record['relation']!r} is missing from {got!r}.")
    return ("all 200 relation scenes agree, and every caption's relation holds: the data says what its captions say, "
            "which is what lets the judge score adherence.")


@lru_cache(maxsize=1)
def measured_psnr_drop(std: float = 0.3, n: int = 256) -> tuple:
    """(PSNR of the VAE's reconstructions, PSNR with N(0, std^2) noise added to the latents) on n example images."""
    vae = load_vae()
    images = to_float(render_shapes(n, seed=123_456).images)
    latents = vae.encode(images)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    return psnr(images, vae.decode(latents)), psnr(images, vae.decode(latents + std * noise))


@exercise("00.2", "psnr_drop", "encode, add `0.3 * torch.randn_like(latents)`, decode; compare psnr(images, ...) with "
          "and without the noise. The drop is the first minus the second, in dB.")
def check_psnr_drop(psnr_drop):
    if not isinstance(psnr_drop, (int, float)):
        raise Wrong(f"psnr_drop is a number of dB, got {type(psnr_drop).__name__}.")
    clean, noisy = measured_psnr_drop()
    expected = clean - noisy
    if psnr_drop < 0:
        raise Wrong(f"{psnr_drop:.1f} dB is negative: noise lowers the PSNR, so the drop (clean minus noisy) is > 0.")
    if abs(psnr_drop - expected) > 1.0:
        raise Wrong(f"{psnr_drop:.1f} dB is more than 1 dB from the check's measurement on 256 images "
                    f"({expected:.1f} dB). Did you add the noise to the latents (not the images), with std 0.3?")
    return (f"an error of std 0.3 in the latent costs {expected:.1f} dB (PSNR {clean:.1f} -> {noisy:.1f} dB): a "
            f"denoiser's last steps must land much closer than that to the data.")


MIXTURE_MEANS = torch.tensor([[-2.0, 1.5], [2.0, 1.5], [0.0, -2.0]])  # lesson 00's three modes, std 0.3 each


def mixture_field(x, t, cond=None):
    """The exact velocity of lesson 00's three-mode Gaussian mixture."""
    return gaussian_mixture_velocity(x, t, MIXTURE_MEANS, torch.full((3,), 0.3), torch.full((3,), 1 / 3))


@exercise("00.3", "euler_by_hand", "the grid is t_k = k / steps; each step does x = x + velocity(x, t) * dt with t a "
          "tensor of shape (B,) holding t_k, and dt = 1 / steps. Start from the noise x, at t = 0.")
def check_euler_by_hand(euler_by_hand):
    noise = torch.randn(500, 2, generator=torch.Generator().manual_seed(3))
    for steps in (1, 5, 50):
        got = call(euler_by_hand, mixture_field, noise.clone(), steps)
        if not isinstance(got, torch.Tensor) or got.shape != noise.shape:
            raise Wrong(f"with {steps} steps it returned {getattr(got, 'shape', type(got).__name__)}; expected the "
                        f"final x, a tensor of the noise's shape {tuple(noise.shape)}.")
        expected = euler_sample(mixture_field, noise, steps=steps)
        if not torch.allclose(got, expected, atol=1e-4):
            error = (got - expected).abs().max().item()
            raise Wrong(f"with {steps} step(s) your samples differ from `euler_sample`'s by up to {error:.3g}. "
                        f"Check the time grid (t from 0 to 1) and the step size.")
    landed = {s: euler_sample(mixture_field, noise, steps=s) for s in (1, 5)}
    near = {s: (torch.cdist(x, MIXTURE_MEANS).min(1).values < 1).float().mean() for s, x in landed.items()}
    return (f"it matches `euler_sample`. With 5 steps {near[5]:.0%} of samples land within 1 of a mode "
            f"({near[1]:.0%} with a single step): the paths are nearly straight, so few steps go a long way.")


EQUAL_COMPUTE = {"steps": dict(dim=64, heads=2), "width": dict(dim=128, heads=4)}  # the two ways to spend compute


@lru_cache(maxsize=1)
def steps_against_width(width_steps: int = 100) -> dict:
    """Validation loss of the lesson's tiny DiT at width 128 for `width_steps` steps, and at width 64 for as many
    more steps as the narrower model's lower Gflops buy (equal training compute), seed 0, batch 64."""
    val = load_latents("val", verbose=False)
    held_out = (val.latents[:500], (val.ids[:500], val.mask[:500]))
    data = load_latents("train", verbose=False)
    flops = {name: dit_tiny(**kw).gflops() for name, kw in EQUAL_COMPUTE.items()}
    result = {}
    for name, kw in EQUAL_COMPUTE.items():
        torch.manual_seed(0)
        steps = round(width_steps * flops["width"] / flops[name])
        run = replace(LESSON_RUN, steps=steps, warmup=steps // 10, val_every=steps, seed=0)
        history = train(dit_tiny(**kw), data.latents, (data.ids, data.mask), config=run, val=held_out,
                        desc=f"exercise 00.4: {name}")
        result[name] = (steps, history.final_val_loss())
    return result


@exercise("00.4", "helps_more", "train both for the same compute: width 128 costs about 4x the Gflops per step of "
          "width 64, so the narrow model gets about 4x the steps. Compare their validation losses.")
def check_helps_more(helps_more):
    choice(helps_more, tuple(EQUAL_COMPUTE))
    result = steps_against_width()
    winner = min(result, key=lambda name: result[name][1])
    numbers = "; ".join(f"{'width 64' if name == 'steps' else 'width 128'} for {steps} steps: validation loss "
                        f"{loss:.3f}" for name, (steps, loss) in result.items())
    if helps_more != winner:
        raise Wrong(f"at equal compute the check measured {numbers}. Which is lower?")
    return f"{numbers} (one seed at a small budget: a direction, not a law)."
