"""Lesson 03's explorer: a latent cut into p x p patches becomes a sequence of tokens (Dosovitskiy et al., 2021 ViT).

Halving the patch size quadruples the tokens and multiplies the attention's cost by sixteen.
"""

import numpy as np
import torch
from matplotlib.figure import Figure

from ..attention import block_macs
from ..patchify import patchify
from ..vae import load_vae
from .base import Explorer, choice_slider, example_latent

DIT_S = {"depth": 12, "dim": 384, "heads": 6}  # the DiT paper's S models


def patch_view(patch_size: int, image: np.ndarray, latent: torch.Tensor) -> dict:
    """What the patch explorer shows: a latent (1, C, h, w) of `image` (H, W, 3) cut into patch_size^2 patches.

    Returns {"image" (H, W, 3), "latent" (C, h, w), "tokens" (N, p*p*C), "grid" (patches per side), "patch_size",
    "n_tokens", "attention_entries", "gflops" (DiT-S-like stack of 12 blocks, multiply-accumulates), "text"}.
    """
    tokens = patchify(latent, patch_size)[0]  # (N, p*p*C)
    n, grid = tokens.shape[0], latent.shape[-1] // patch_size
    gflops = DIT_S["depth"] * block_macs(n, DIT_S["dim"]) / 1e9
    size, channels, side = image.shape[0], latent.shape[1], latent.shape[-1]
    pixels = patch_size * size // side  # image pixels per patch side
    text = (f"image {size}x{size} -> latent {channels}x{side}x{side}; patch {patch_size}x{patch_size} "
            f"(covers {pixels}x{pixels} image pixels)\n"
            f"tokens: {grid}x{grid} = {n}, each of {tokens.shape[1]} numbers\n"
            f"attention matrix: {n}x{n} = {n * n:,} entries per head\n"
            f"DiT-S-like stack (12 blocks, width 384): {gflops:.3f} Gflops per image")
    return {"image": image, "latent": latent[0].numpy(), "tokens": tokens.numpy(), "grid": grid,
            "patch_size": patch_size, "n_tokens": n, "attention_entries": n * n, "gflops": gflops, "text": text}


def draw_patches(view: dict, fig: Figure):
    """(a) the patch grid over the image, (b) over the latent (channel 0), (c) the token sequence."""
    ax_img, ax_lat, ax_tok = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.6]})
    size, lsize, g = view["image"].shape[0], view["latent"].shape[-1], view["grid"]
    ax_img.imshow(view["image"], extent=(0, size, size, 0), interpolation="nearest")
    ax_lat.imshow(view["latent"][0], extent=(0, lsize, lsize, 0), cmap="RdBu_r", interpolation="nearest")
    for ax, side, colour in ((ax_img, size, "white"), (ax_lat, lsize, "k")):
        for k in range(1, g):
            ax.axhline(k * side / g, color=colour, lw=1)
            ax.axvline(k * side / g, color=colour, lw=1)
        ax.set_xticks([])
        ax.set_yticks([])
    if g <= 8:
        for k in range(g * g):
            r, c = divmod(k, g)
            ax_lat.text((c + 0.5) * lsize / g, (r + 0.5) * lsize / g, str(k), ha="center", va="center", fontsize=7)
    ax_img.set_title(f"(a) image, {g}x{g} patches")
    ax_lat.set_title("(b) latent channel 0, token ids")
    ax_tok.imshow(view["tokens"], aspect="auto", cmap="RdBu_r", interpolation="nearest")
    ax_tok.set_xlabel("features (patch row, patch column, channel)")
    ax_tok.set_ylabel("token (row-major)")
    ax_tok.set_title(f"(c) {view['n_tokens']} tokens x {view['tokens'].shape[1]} features")
    fig.tight_layout()


def patch_explorer(patch_size: int = 2, image_size: int = 32, vae=None) -> Explorer:
    """Sliders for the patch size (divisors of the latent side) and the image size (32 or 64).

    The example scene is encoded once per image size with `vae` (default: the shipped VAE, loaded here once).
    """
    for name, value, allowed in (("patch_size", patch_size, (1, 2, 4, 8)), ("image_size", image_size, (32, 64))):
        if value not in allowed or isinstance(value, bool):
            raise ValueError(f"{name} must be one of {allowed} (the slider's values), got {value!r}.")
    vae = load_vae() if vae is None else vae
    examples = {size: example_latent(vae, size) for size in (32, 64)}  # size -> (image (H, W, 3), latent)
    controls = {
        "patch_size": choice_slider("patch size", [1, 2, 4, 8], patch_size),
        "image_size": choice_slider("image size", [32, 64], image_size),
    }
    return Explorer(lambda patch_size, image_size: patch_view(patch_size, *examples[image_size]), draw_patches,
                    controls)
