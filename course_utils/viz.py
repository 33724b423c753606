"""Plotting helpers shared by the notebooks: image grids, latent channels and training curves."""

import matplotlib.pyplot as plt
import torch

from .data import to_float


def _as_hwc(image: torch.Tensor):
    """(3, H, W) uint8 or float in [-1, 1] -> (H, W, 3) float in [0, 1] for imshow."""
    if image.dtype == torch.uint8:
        image = to_float(image)
    return ((image.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).numpy()


def show_images(images: torch.Tensor, titles=None, ncols: int = 8, size: float = 1.7, fontsize: int = 7):
    """Grid of images (B, 3, H, W), uint8 or float in [-1, 1], with optional titles; returns the figure."""
    n = len(images)
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_as_hwc(images[i]), interpolation="nearest")
            if titles is not None:
                ax.set_title(_wrap(titles[i]), fontsize=fontsize)
    fig.tight_layout()
    return fig


def _wrap(text: str, width: int = 22) -> str:
    words, lines, line = str(text).split(), [], ""
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join(lines + [line])


def show_latent_channels(latents: torch.Tensor, size: float = 1.7):
    """One row per latent (B, C, h, w): its C channels as heat maps on a shared colour scale."""
    b, c = latents.shape[:2]
    lim = latents.abs().max().item()
    fig, axes = plt.subplots(b, c, figsize=(size * c, size * b), squeeze=False)
    for i in range(b):
        for j in range(c):
            axes[i, j].imshow(latents[i, j].detach().cpu().numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
            axes[i, j].axis("off")
            if i == 0:
                axes[i, j].set_title(f"channel {j}", fontsize=8)
    fig.tight_layout()
    return fig


def plot_curves(histories: dict, key: str = "val_loss", ax=None, logy: bool = True):
    """Plot one curve per training history ({label: history}) against the training step."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for label, history in histories.items():
        points = getattr(history, key)
        steps, values = zip(*points) if points else ((), ())
        ax.plot(steps, values, marker="o" if len(steps) < 15 else None, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel(key.replace("_", " "))
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    return ax
