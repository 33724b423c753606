"""Plotting helpers shared by the notebooks: image grids, latent channels, training curves, and comparisons over
seeds drawn with their 95% intervals (curves with bands, bars with error bars)."""

import matplotlib.pyplot as plt
import numpy as np
import torch

from .data import to_float
from .results import PROPORTIONS, by_distance, summarize
from .stats import mean_interval


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


def plot_bands(result: dict, ax=None, logy: bool = True, label: str = ""):
    """The validation-loss curves of a comparison: per variant the mean over seeds and its 95% t interval as a band.
    label: a prefix for the legend (e.g. "reference")."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for variant, entry in result["variants"].items():
        curves = entry["metrics"]["curve"]  # one [[step, value], ...] per seed
        steps = [s for s, _ in curves[0]]
        intervals = [mean_interval([curve[i][1] for curve in curves]) for i in range(len(steps))]
        mean = [i.mean for i in intervals]
        line, = ax.plot(steps, mean, label=f"{label}{variant}")
        if len(curves) > 1:
            ax.fill_between(steps, [i.low for i in intervals], [i.high for i in intervals], color=line.get_color(),
                            alpha=0.2, linewidth=0)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    return ax


def plot_bars(results: dict, metric: str = "val_loss", ax=None):
    """One group of bars per variant, one bar per result ({label: result}, e.g. "your run" and "reference"), each
    with its 95% interval as an error bar (t over seeds; Wilson over prompts for adherence)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    variants = list(next(iter(results.values()))["variants"])
    width = 0.8 / len(results)
    for k, (label, result) in enumerate(results.items()):
        intervals = summarize(result, metric)
        x = np.arange(len(variants)) + (k - (len(results) - 1) / 2) * width
        means = np.array([intervals[v].mean for v in variants])
        lows = np.array([intervals[v].low for v in variants])
        highs = np.array([intervals[v].high for v in variants])
        finite = np.isfinite(lows) & np.isfinite(highs)  # one seed: no interval to draw
        errors = np.where(finite, [means - lows, highs - means], 0.0)
        ax.bar(x, means, width, yerr=errors, capsize=3, label=f"{label} (n={intervals[variants[0]].n})")
    ax.set_xticks(range(len(variants)), [v.replace("_", " ") for v in variants], fontsize=8)
    ax.set_ylabel(metric.replace("_", " ") + (" (share)" if metric in PROPORTIONS else ""))
    if metric not in PROPORTIONS:  # zoom in on the differences
        tops = [summarize(r, metric)[v] for r in results.values() for v in variants]
        low = min(i.low if np.isfinite(i.low) else i.mean for i in tops)
        high = max(i.high if np.isfinite(i.high) else i.mean for i in tops)
        ax.set_ylim(low - 0.1 * (high - low), high + 0.1 * (high - low))
    ax.legend(fontsize=7)
    return ax


def plot_comparison(results: dict, metric: str = "val_loss"):
    """A comparison at a glance: one panel of validation curves with bands per result ({label: result}, e.g. your
    run and the reference), then the metric as bars with 95% error bars, all results side by side."""
    fig, axes = plt.subplots(1, len(results) + 1, figsize=(5 * (len(results) + 1), 3.4))
    for ax, (label, result) in zip(axes, results.items()):
        plot_bands(result, ax=ax)
        budget = result["budget"]
        ax.set_title(f"{label}: {budget['steps']} steps x {len(budget['seeds'])} seeds", fontsize=9)
    plot_bars(results, metric, ax=axes[-1])
    axes[-1].set_title(f"final {metric.replace('_', ' ')}, 95% intervals", fontsize=9)
    fig.tight_layout()
    return fig


def plot_by_distance(results: dict, ax=None):
    """Pair consistency against the distance between the two objects (grid cells), one line per variant and result
    ({label: result} of a twins comparison), each point with its 95% Wilson interval over the pairs found."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for k, (label, result) in enumerate(results.items()):
        for variant, rows in by_distance(result).items():
            x = np.array([float(d) for d in rows]) + 0.03 * k  # nudged so that error bars do not overlap
            means = np.array([i.mean for i in rows.values()])
            errors = [means - [i.low for i in rows.values()], [i.high for i in rows.values()] - means]
            ax.errorbar(x, means, yerr=errors, marker="o", capsize=3, linestyle="--" if k else "-",
                        label=f"{label}: {variant.replace('_', ' ')}")
    ax.set_xlabel("distance between the two objects (grid cells)")
    ax.set_ylabel("matching pairs among pairs found")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    return ax
