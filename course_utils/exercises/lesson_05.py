"""Lesson 05's exercises: where a DiT without positions loses, where RoPE's slowest pair wraps around, how far
mixed RoPE's frequency vectors point off the axes, and interpolating the absolute table for a larger grid."""

import math
from dataclasses import replace
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn

from ..checkpoint import load_model
from ..config import SEEDS
from ..data import MODES
from ..dit import DiT, dit_tiny
from ..explorers.rope import rope_1d_view, score_map, separability
from ..latents import build_latents, load_latents
from ..patchify import patchify, sincos_pos_embed_2d, unpatchify
from ..rope import mixed_angles, mixed_frequencies, rope_frequencies
from ..train import LESSON_RUN, train, validation_loss
from .base import Wrong, call, choice, exercise


def as_tensor(value, what: str) -> torch.Tensor:
    """A student's array-like answer as a float64 tensor, or Wrong naming what was expected."""
    if not isinstance(value, (torch.Tensor, np.ndarray)):
        raise Wrong(f"{what} should be a tensor, got {type(value).__name__}.")
    return torch.as_tensor(value).double()


POSITION_STEPS = 60  # training steps of each DiT in exercise 05.1 (batch 32): about 20 s for both on one CPU core
SCENE_MODES = ("single", "relation", "pair")  # the scene modes of the validation latents


@lru_cache(maxsize=1)
def without_positions(steps: int = POSITION_STEPS) -> dict:
    """{pos: (model, {mode: validation loss})} for the lesson's DiT with pos "none" and "rope_axial", each trained
    `steps` steps of batch 32 (seed 0); the losses are over 300 validation latents of each scene mode."""
    data, val = load_latents("train", verbose=False), load_latents("val", verbose=False)
    result = {}
    for pos in ("none", "rope_axial"):
        torch.manual_seed(0)
        model = dit_tiny(pos=pos)
        train(model, data.latents, (data.ids, data.mask), desc=f"exercise 05.1: {pos}",
              config=replace(LESSON_RUN, steps=steps, batch_size=32, warmup=steps // 10, val_every=steps, seed=0))
        losses = {}
        for mode in SCENE_MODES:
            idx = (val.scenes[:, 0] == MODES.index(mode)).nonzero()[:300, 0]
            losses[mode] = validation_loss(model, val.latents[idx], (val.ids[idx], val.mask[idx]))
        result[pos] = (model.eval(), losses)
    return result


@torch.no_grad()
def shuffle_gap(model) -> float:
    """Largest change of model(shuffled x_t) - shuffled model(x_t), patches shuffled (lesson 03's permute test)."""
    gen, val = torch.Generator().manual_seed(5), load_latents("val", verbose=False)
    x, t, cond = torch.randn(4, 4, 8, 8, generator=gen), torch.rand(4, generator=gen), (val.ids[:4], val.mask[:4])
    order = torch.randperm(16, generator=gen)
    shuffle = lambda z: unpatchify(patchify(z, 2)[:, order], 2, 4, 4, 4)  # noqa: E731  (patch k <- patch order[k])
    return (model(shuffle(x), t, cond) - shuffle(model(x, t, cond))).abs().max().item()


@exercise("05.1", "worse_on", "a DiT without positions cannot know where a patch is (lesson 03's permute test). Which "
          "captions say where something is? Read a single-object caption again: 'a large red circle in the top left'.")
def check_worse_on(worse_on):
    choice(worse_on, ("relation", "all"))
    runs = without_positions()
    (none_model, none), (rope_model, rope) = runs["none"], runs["rope_axial"]
    measured = "all" if all(none[mode] > rope[mode] for mode in SCENE_MODES) else "relation"
    losses = "; ".join(f"{mode} {none[mode]:.3f} against {rope[mode]:.3f}" for mode in SCENE_MODES)
    if worse_on != measured:
        raise Wrong(f"the check trained both DiTs for {POSITION_STEPS} steps (batch 32, seed 0); validation loss "
                    f"without positions against axial RoPE, per scene mode: {losses}. Where is it worse?")
    gaps = shuffle_gap(none_model), shuffle_gap(rope_model)
    return (f"after {POSITION_STEPS} steps (batch 32, seed 0), validation loss without positions against axial "
            f"RoPE, per scene mode: {losses}. Shuffle the patches of x_t and the DiT without positions shuffles its "
            f"prediction the same way (largest difference {gaps[0]:.0e}; with RoPE {gaps[1]:.2f}): it cannot place "
            f"anything, and every Shapes caption but 'two ...' says where. One seed at a small budget: a direction.")


def full_turn(theta: float, dim: int) -> float:
    return 2 * math.pi / rope_frequencies(dim, theta)[-1].item()


@exercise("05.2", "wraparound", "the slowest pair is the last one: rope_frequencies(dim, theta)[-1] radians per "
          "position. It is back where it started when offset * frequency = 2 pi.")
def check_wraparound(wraparound):
    for theta, dim in ((10.0, 16), (100.0, 16), (10_000.0, 16), (10_000.0, 64), (10.0, 8)):
        got, expected = call(wraparound, theta, dim), full_turn(theta, dim)
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            raise Wrong(f"wraparound({theta:g}, {dim}) should be a number of positions, got {type(got).__name__}.")
        if not math.isclose(got, expected, rel_tol=1e-3):
            why = (" That is half a turn: a full turn is 2 pi." if math.isclose(got, expected / 2, rel_tol=1e-3) else
                   " That is the fastest pair's; the slowest is the last." if math.isclose(
                       got, 2 * math.pi / rope_frequencies(dim, theta)[0].item(), rel_tol=1e-3) else "")
            raise Wrong(f"wraparound({theta:g}, {dim}) = {got:.4g}, but the slowest of {dim // 2} pairs turns once "
                        f"every {expected:.4g} positions.{why}")
    view = rope_1d_view(theta=10.0, pair=7, dim=16)
    assert math.isclose(view["wavelength"], full_turn(10.0, 16), rel_tol=1e-5)  # what the explorer prints
    return (f"with theta 10 the explorer's slowest pair (head dim 16) turns once every {full_turn(10.0, 16):.1f} "
            f"positions; with theta 10,000 every {full_turn(10_000.0, 16):,.0f}. Further apart than that, even the "
            f"slowest pair cannot tell offset d from d + {full_turn(10.0, 16):.1f}; only the faster pairs, which "
            f"wrapped long before, separate them. That is why language models use a large theta.")


DIRECTIONS = (0.0, 20.0, 45.0, 90.0, 120.0, 180.0, 290.0)  # degrees: heads of the check's mixed RoPE


def folded_angles(freqs: torch.Tensor) -> torch.Tensor:
    """freqs (..., 2) (f_row, f_col) -> degrees (...) from the nearest axis, by complex numbers in float64."""
    angle = np.degrees(np.angle(freqs[..., 0].double().numpy() + 1j * freqs[..., 1].double().numpy())) % 90
    return torch.from_numpy(np.minimum(angle, 90 - angle))


@exercise("05.3", "off_axis", "a pair's vector (f_row, f_col) points at atan2(f_col, f_row). Take it modulo 90 "
          "degrees (the axes repeat every 90), then fold: an angle a is min(a, 90 - a) from the nearest axis.")
def check_off_axis(off_axis):
    random_freqs = torch.randn(2, 3, 8, 2, generator=torch.Generator().manual_seed(0))
    freqs = mixed_frequencies(16, len(DIRECTIONS), theta=10.0, directions=torch.deg2rad(torch.tensor(DIRECTIONS)))
    for case, f in (("random frequency vectors (2, 3, 8, 2)", random_freqs),
                    (f"mixed_frequencies with directions {DIRECTIONS} degrees", freqs)):
        got = as_tensor(call(off_axis, f.clone()), f"off_axis of {case}")
        if got.shape != f.shape[:-1]:
            raise Wrong(f"for {case} it returned shape {tuple(got.shape)}; expected one angle per pair, "
                        f"{tuple(f.shape[:-1])}.")
        expected = folded_angles(f)
        if not torch.allclose(got, expected, atol=1e-3):
            i = (got - expected).abs().argmax().item()
            raise Wrong(f"for {case}: the vector {f.reshape(-1, 2)[i].tolist()} is {expected.flatten()[i]:.2f} "
                        f"degrees from the nearest axis; you returned {got.flatten()[i]:.2f} (angles in degrees, "
                        f"0 to 45).")
    seps = [separability(score_map(mixed_angles(15, 15, f), 7 * 15 + 7, 15, 15)) for f in freqs]
    worst = as_tensor(off_axis(freqs), "off_axis").amax(-1)
    assert all((s < 1e-5) == (a < 1e-3) for s, a in zip(seps, worst))  # axial exactly when on the axes
    torch.manual_seed(0)
    fresh = as_tensor(off_axis(mixed_frequencies(32, 4, theta=10.0)), "off_axis").mean()
    table = ", ".join(f"{d:g} deg: {s:.2f}" for d, s in zip(DIRECTIONS, seps))
    return (f"a head's score map is row + column exactly when its pairs lie on the axes (the part not row + column: "
            f"{table}). A fresh head starts {fresh:.1f} degrees off axis on average (seed 0). Now compare "
            f"off_axis(runs['rope_mixed'].rope.freqs) after section 6's run with a fresh MixedRoPE's.")


def sincos_by_hand(dim: int, h: int, w: int, scale: float) -> torch.Tensor:
    """The 2D sine-cosine table at positions (row * scale, col * scale) in float64, from the closed form."""
    freqs = 10_000.0 ** (-np.arange(dim // 4) / (dim // 4))
    rows, cols = np.meshgrid(np.arange(h) * scale, np.arange(w) * scale, indexing="ij")
    halves = [np.concatenate([np.sin(p.reshape(-1, 1) * freqs), np.cos(p.reshape(-1, 1) * freqs)], 1)
              for p in (rows, cols)]
    return torch.from_numpy(np.concatenate(halves, 1))


class InterpolatedPatchEmbed(nn.Module):
    """A model's PatchEmbed with `table(dim, h, w, scale)` added: (B, C, H, W) -> (B, N, dim)."""

    def __init__(self, embed: nn.Module, table, scale: float):
        super().__init__()
        self.embed, self.table, self.scale = embed, table, scale
        self.patch_size, self.in_channels = embed.patch_size, embed.in_channels

    def forward(self, x):
        tokens = self.embed(x)  # (B, N, D)
        h, w = x.shape[2] // self.patch_size, x.shape[3] // self.patch_size
        return tokens + torch.as_tensor(self.table(tokens.shape[-1], h, w, self.scale)).to(tokens)


@exercise("05.4", "sincos_table", "build the row and column positions of the grid as floats times scale, then "
          "concatenate sincos_1d(dim // 2, rows) and sincos_1d(dim // 2, cols): sincos_1d takes any real positions.")
def check_sincos_table(sincos_table):
    for dim, h, w, scale in ((64, 4, 4, 1.0), (32, 3, 5, 1.0), (64, 6, 10, 0.5), (128, 16, 16, 0.5), (32, 8, 4, 0.25)):
        got = as_tensor(call(sincos_table, dim, h, w, scale), f"sincos_table({dim}, {h}, {w}, {scale})")
        if got.shape != (h * w, dim):
            raise Wrong(f"sincos_table({dim}, {h}, {w}, {scale}) has shape {tuple(got.shape)}; expected "
                        f"({h * w}, {dim}): one row per token, row-major.")
        expected = sincos_by_hand(dim, h, w, scale)
        if not torch.allclose(got, expected, atol=1e-5):
            token = (got - expected).abs().amax(1).argmax().item()
            where = f"token {token} (grid row {token // w}, column {token % w})"
            raise Wrong(f"sincos_table({dim}, {h}, {w}, {scale}) is wrong at {where}; it should encode position "
                        f"({token // w * scale:g}, {token % w * scale:g})"
                        + (", as sincos_pos_embed_2d does." if scale == 1 else "."))
    even = torch.as_tensor(sincos_table(64, 8, 8, 0.5)).reshape(8, 8, 64)[::2, ::2].reshape(16, 64)
    assert torch.allclose(even, sincos_pos_embed_2d(64, 4, 4), atol=1e-5)  # half-steps land on the 4x4 grid
    losses = interpolation_losses(sincos_table)
    verdict = "lowers" if losses["interpolated"] < losses["extrapolated"] else "does not lower"
    return (f"at scale 1 it is sincos_pos_embed_2d; at scale 1/2 an 8x8 grid spans the 4x4 positions the DiT was "
            f"trained on. On 64 real 64x64 images the shipped DiT's validation loss is {losses['extrapolated']:.2f} "
            f"with the table extrapolated (positions 0..7) and {losses['interpolated']:.2f} interpolated "
            f"(0, 0.5, ..., 3.5): interpolation {verdict} it. At 32x32 it scores {losses['native']:.2f}; the 64x64 "
            f"images are new content too (the objects keep their pixel size), which no table fixes.")


def interpolation_losses(table) -> dict:
    """The shipped DiT's validation loss at 32x32 and on 64 real 64x64 images, with the sine-cosine table
    extrapolated (the package's) and interpolated (`table` at scale 1/2)."""
    shipped = load_model("dit").eval()
    big, val = build_latents(64, seed=SEEDS["exercises"] + 54, size=64), load_latents("val", verbose=False)
    variant = DiT(replace(shipped.config, pos="none"))  # the same weights; the table is added by the embedder
    variant.load_state_dict(shipped.state_dict())
    variant.x_embedder = InterpolatedPatchEmbed(variant.x_embedder, table, 0.5)
    return {"native": validation_loss(shipped, val.latents[:256], (val.ids[:256], val.mask[:256])),
            "extrapolated": validation_loss(shipped, big.latents, (big.ids, big.mask)),
            "interpolated": validation_loss(variant.eval(), big.latents, (big.ids, big.mask))}
