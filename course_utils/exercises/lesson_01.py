"""Lesson 01's exercises: the receptive-field recurrence by hand, the depth that sees an image, the sqrt law in closed
form, and what training does to the effective field."""

import math
from functools import lru_cache

import torch
import torch.nn as nn

from ..data import render_shapes, to_float
from ..receptive_field import (
    build_stack,
    conv,
    effective_receptive_field,
    erf_std,
    layers_to_see,
    pool,
    receptive_field,
    receptive_field_table,
    stack_layers,
)
from .base import Wrong, call, choice, exercise

MIXED_STACK = [conv(5), pool(2), conv(3, dilation=2), pool(3, 2), conv(3)]


@exercise("01.1", "field_and_jump", "go layer by layer: r += (k_eff - 1) * jump, then jump *= stride, with "
          "k_eff = dilation * (k - 1) + 1. A pool(2) has stride 2; pool(3, 2) has kernel 3 and stride 2.")
def check_field_and_jump(field_and_jump):
    last = receptive_field_table(MIXED_STACK)[-1]
    expected = (last["rf"], last["jump"])
    if not (isinstance(field_and_jump, tuple) and len(field_and_jump) == 2):
        raise Wrong(f"answer a pair (field, jump), got {field_and_jump!r}.")
    field, jump = field_and_jump
    if field != expected[0]:
        raise Wrong(f"the field {field} is not right (the jump {'is' if jump == expected[1] else 'is not'} either). "
                    f"Recompute it after each layer; print receptive_field_table(stack) only to find your slip.")
    if jump != expected[1]:
        raise Wrong(f"the field is right, the jump {jump} is not: multiply the strides.")
    return f"field {field} px, jump {jump} px: a unit of the last layer steps {jump} pixels per position."


@exercise("01.2", "smallest_depth", "start at depth 1 and grow it until receptive_field(stack_layers(depth, "
          "downsample_every=...)) is at least the target.")
def check_smallest_depth(smallest_depth):
    for target in (3, 8, 17, 32, 64):
        for every in (0, 1, 2):
            got, expected = call(smallest_depth, target, every), layers_to_see(target, downsample_every=every)
            if got != expected:
                field = receptive_field(stack_layers(got, downsample_every=every)) if isinstance(got, int) else None
                whose = f", whose field is {field} px" if field else ""
                raise Wrong(f"smallest_depth({target}, downsample_every={every}) gave {got!r}{whose}; the smallest "
                            f"depth is {expected}.")
    plain, pooled = layers_to_see(32), layers_to_see(32, downsample_every=1)
    return f"a 32x32 image takes {plain} plain 3x3 layers, or {pooled} with a pool after every layer."


def box_stack_std(depth: int) -> float:
    """The measured effective-field std of `depth` 3x3 box filters (uniform positive weights), on a large input."""
    side = 4 * depth + 9
    grad = effective_receptive_field(build_stack(stack_layers(depth), channels=1, positive=True), (3, side, side))
    return erf_std(grad)


@exercise("01.3", "predicted_std", "along one axis, each box filter moves the centre by -1, 0 or +1 pixel with equal "
          "probability (variance 2/3), and the offsets of independent layers add: variances add.")
def check_predicted_std(predicted_std):
    for depth in (1, 2, 4, 8, 16):
        got, measured = call(predicted_std, depth), box_stack_std(depth)
        if not isinstance(got, (int, float)) or not math.isclose(got, measured, rel_tol=0.01):
            raise Wrong(f"predicted_std({depth}) = {got!r}, but the measured std of {depth} box filters is "
                        f"{measured:.3f} px.")
    return ("the effective field's std is sqrt(2L/3): a sum of L independent offsets, so it grows like sqrt(L) while "
            "the theoretical field grows like 2L + 1.")


@lru_cache(maxsize=1)
def trained_field(steps: int = 100) -> tuple:
    """(effective-field std at random init, after `steps` of denoising training): lesson 01's section 6, seed 0."""
    torch.manual_seed(0)
    net = build_stack(stack_layers(10), channels=32, nonlinear=True, seed=0)
    denoiser = nn.Sequential(net, nn.Conv2d(32, 3, 1))
    before = erf_std(effective_receptive_field(net, (3, 64, 64)))
    images = to_float(render_shapes(2000, seed=5).images)
    opt = torch.optim.Adam(denoiser.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = images[torch.randint(len(images), (32,), generator=gen)]
        loss = ((denoiser(x + 0.5 * torch.randn(x.shape, generator=gen)) - x) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return before, erf_std(effective_receptive_field(net, (3, 64, 64)))


@exercise("01.4", "after_training", "section 6 prints the effective field's std before and after training; read the "
          "two numbers. Removing noise needs only a pixel's close neighbours.")
def check_after_training(after_training):
    choice(after_training, ("wider", "narrower"))
    before, after = trained_field()
    measured = "wider" if after > before else "narrower"
    if after_training != measured:
        raise Wrong(f"the check trained section 6's denoiser for 100 steps: std {before:.2f} px at init, {after:.2f} "
                    f"px after. Is that wider or narrower?")
    return (f"{before:.2f} px at init -> {after:.2f} px after 100 steps (one seed; it stays near 3 px up to 1,600 "
            f"steps): training does not grow the effective field, it concentrates it on what denoising needs.")

