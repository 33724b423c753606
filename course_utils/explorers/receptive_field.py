"""Lesson 01's explorer: how far one output unit of a conv stack sees (Luo et al., 2016, effective receptive field).

Depth grows the theoretical field linearly, downsampling multiplies it; the measured (effective) field is smaller.
"""

import functools

import matplotlib.patches as mpatches
import numpy as np
import torch
from matplotlib.figure import Figure

from ..receptive_field import build_stack, effective_receptive_field, erf_std, receptive_field_table, stack_layers
from .base import Explorer, example_scene, int_slider


def receptive_field_view(depth: int, kernel: int = 3, dilation: int = 1, downsample_every: int = 0,
                         image_size: int = 32, max_depth: int = 16) -> dict:
    """What the receptive-field explorer shows for these slider values.

    Returns {"rf", "jump", "square": (x0, y0, side) over the image, "erf": (H, W) array, "erf_std",
    "depths" (max_depth,), "rf_plain", "rf_down" (lists over depths), "downsample_every", "depth", "layers",
    "image_size", "text"}. The effective field is measured on a random linear stack of the same layers
    (8 channels) at the image's size.
    """
    for name, value, low in (("depth", depth, 1), ("max_depth", max_depth, 1), ("image_size", image_size, 8),
                             ("downsample_every", downsample_every, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    if depth > max_depth:
        raise ValueError(f"depth must be at most max_depth={max_depth} (the curve's last depth), got {depth}.")
    max_pools = int(np.log2(image_size)) - 2  # keep at least a 4x4 map
    layers = stack_layers(depth, kernel, dilation, downsample_every, max_pools)
    row = receptive_field_table(layers)[-1]
    rf, jump = row["rf"], row["jump"]
    erf = effective_receptive_field(build_stack(layers), (3, image_size, image_size)).numpy()  # (H, W)
    spread = erf_std(torch.from_numpy(erf))
    depths = np.arange(1, max_depth + 1)
    every = downsample_every or 2
    rf_plain = [receptive_field_table(stack_layers(d, kernel, dilation))[-1]["rf"] for d in depths]
    rf_down = [receptive_field_table(stack_layers(d, kernel, dilation, every, max_pools))[-1]["rf"] for d in depths]
    centre = image_size // 2
    side = min(rf, 4 * image_size)
    sees = "the whole image" if rf >= image_size else f"{rf}x{rf} of {image_size}x{image_size} pixels"
    text = (f"depth {depth}, kernel {kernel}, dilation {dilation}, "
            f"downsample {'every ' + str(downsample_every) + ' layers' if downsample_every else 'never'}\n"
            f"receptive field: {rf} pixels (jump {jump}); one output unit sees {sees}\n"
            f"effective receptive field: std {spread:.2f} pixels")
    return {"rf": rf, "jump": jump, "square": (centre - side / 2, centre - side / 2, side), "erf": erf,
            "erf_std": spread, "depths": depths, "rf_plain": rf_plain, "rf_down": rf_down,
            "downsample_every": every, "depth": depth, "layers": layers, "image_size": image_size, "text": text}


@functools.lru_cache(maxsize=2)
def background_image(size: int = 32) -> np.ndarray:
    """The example scene (size, size, 3) uint8 that panel (a) draws the field over (rendered, not read)."""
    return np.ascontiguousarray(example_scene(size)[0].permute(1, 2, 0).numpy())


def draw_receptive_field(view: dict, fig: Figure):
    """(a) the field as a square over a Shapes image, (b) the measured effective field, (c) field vs depth."""
    ax_img, ax_erf, ax_curve = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.4]})
    size = view["image_size"]
    ax_img.imshow(background_image(size), extent=(0, size, size, 0), interpolation="nearest")
    x0, y0, side = view["square"]
    ax_img.add_patch(mpatches.Rectangle((x0, y0), side, side, fill=False, edgecolor="white", linewidth=2))
    ax_img.plot(size // 2, size // 2, "w+", markersize=10)
    ax_img.set_xlim(0, size)
    ax_img.set_ylim(size, 0)
    ax_img.set_title(f"(a) receptive field: {view['rf']} px")
    ax_erf.imshow(view["erf"], cmap="magma")
    ax_erf.set_title(f"(b) effective field, std {view['erf_std']:.1f} px")
    for ax in (ax_img, ax_erf):
        ax.set_xticks([])
        ax.set_yticks([])
    ax_curve.plot(view["depths"], view["rf_plain"], "o-", ms=3, label="plain convs (linear)")
    ax_curve.plot(view["depths"], view["rf_down"], "s-", ms=3, label=f"pool every {view['downsample_every']}")
    ax_curve.axhline(size, color="gray", ls="--", lw=1)
    ax_curve.text(1, size * 1.06, f"image side ({size})", fontsize=8, color="gray")
    ax_curve.axhline(size // 4, color="gray", ls=":", lw=1)
    ax_curve.text(1, size // 4 * 1.12, f"latent side ({size // 4})", fontsize=8, color="gray")
    ax_curve.axvline(view["depth"], color="k", lw=1)
    ax_curve.set_yscale("log", base=2)
    ax_curve.set_xlabel("depth (conv layers)")
    ax_curve.set_ylabel("receptive field (px)")
    ax_curve.set_title("(c) receptive field vs depth")
    ax_curve.legend(fontsize=8)
    fig.tight_layout()


def receptive_field_explorer(depth: int = 4, kernel: int = 3, dilation: int = 1, downsample_every: int = 0) -> Explorer:
    """Sliders for depth, kernel size, dilation and 'downsample every N layers' (0 = never)."""
    controls = {
        "depth": int_slider("depth", depth, 1, 16),
        "kernel": int_slider("kernel", kernel, 1, 7, step=2),
        "dilation": int_slider("dilation", dilation, 1, 4),
        "downsample_every": int_slider("downsample every", downsample_every, 0, 4),
    }
    return Explorer(receptive_field_view, draw_receptive_field, controls)
