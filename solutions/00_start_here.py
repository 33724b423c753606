"""Reference solutions to lesson 00's exercises. Each block is what the exercise cell holds once filled in; try the
exercise first. Check a block with `check(KEY, NAME)` in the notebook; tests/test_exercises.py checks them all."""

# %% exercise 00.1
from course_utils.data import RELATIONS, relation_holds


def true_relations(record):
    """The relations (of RELATIONS) that the first object of a two-object record stands in to the second."""
    a, b = record["objects"]
    return {relation for relation in RELATIONS if relation_holds(relation, a, b)}


# %% exercise 00.2
import torch

from course_utils.data import render_shapes, to_float
from course_utils.vae import load_vae, psnr

vae = load_vae()
images = to_float(render_shapes(500, seed=123_456).images)
latents = vae.encode(images)
noisy = latents + 0.3 * torch.randn_like(latents)
psnr_drop = psnr(images, vae.decode(latents)) - psnr(images, vae.decode(noisy))


# %% exercise 00.3
import torch


def euler_by_hand(velocity, x, steps):
    """Integrate dx/dt = velocity(x, t) from t = 0 to 1 with `steps` equal Euler steps."""
    dt = 1.0 / steps
    for k in range(steps):
        t = torch.full((x.shape[0],), k * dt)
        x = x + velocity(x, t) * dt
    return x


# %% exercise 00.4
helps_more = "steps"
