"""Scaling a DiT in size and in patch size together (Peebles & Xie, 2023, section 5): the grid of the `scaling`
comparison, and reading its result: each variant's quality against its Gflops with 95% intervals, a power-law fit
across the grid, and the paired contrasts "same model, smaller patch" (nearly the same parameters, more tokens).

    scaling_variants()                        # {"w64d2_p4": builder, ...}: 3 sizes x patches 4, 2, 1
    run_comparison("scaling", variants=SCALING_LESSON)   # notebook 07's live run: the cross of the grid
    power_law_fit(gflops, frechet)            # frechet ~ prefactor * gflops ** exponent, with r and an interval
    patch_contrasts(result, "frechet_single") # {("w96d3", 1, 4): Interval of p1 - p4 over the shared seeds, ...}
"""

import math
import re
from functools import partial
from typing import NamedTuple

from .dit import dit_tiny
from .results import LOWER_IS_BETTER, difference, summarize
from .stats import Interval, t_quantile

# The model sizes, S/M/L-like but small enough to train on a CPU: name -> (width, depth). Every size has heads of
# HEAD_DIM channels, as the DiT paper keeps its head width (64) from DiT-S to DiT-XL.
SCALING_SIZES = {"w64d2": (64, 2), "w96d3": (96, 3), "w128d4": (128, 4)}
HEAD_DIM = 32
# Patch sizes on 8x8 latents: 4, 16 and 64 tokens (the paper's patches 8, 4, 2 on 32x32 latents give 16, 64, 256).
SCALING_PATCHES = (4, 2, 1)
VARIANT = re.compile(r"^(w\d+d\d+)_p(\d+)$")
# What notebook 07 runs live (lesson scale): the cross of the grid, one axis at a time as in the paper's Figure 6: the
# middle size at every patch (size fixed, patch varies) and every size at patch 2 (patch fixed, size varies).
SCALING_LESSON = ("w64d2_p2", "w96d3_p4", "w96d3_p2", "w96d3_p1", "w128d4_p2")


def variant_name(size: str, patch: int) -> str:
    """"w96d3", 2 -> "w96d3_p2"."""
    return f"{size}_p{patch}"


def parse_variant(name: str) -> tuple:
    """"w96d3_p2" -> ("w96d3", 2); a name outside the grid's pattern is a ValueError."""
    match = VARIANT.match(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"a scaling variant is named SIZE_pPATCH (e.g. 'w96d3_p2', width 96, depth 3, patch 2), "
                         f"got {name!r}.")
    return match.group(1), int(match.group(2))


def dit_scaled(dim: int, depth: int, patch_size: int):
    """The grid's DiT: adaLN-Zero, absolute positions, MLP ratio 4 on 8x8 latents (lesson 04's dit_tiny), at width
    `dim`, `depth` blocks of dim / HEAD_DIM heads, and patch `patch_size`."""
    return dit_tiny("adaln_zero", dim=dim, depth=depth, heads=dim // HEAD_DIM, patch_size=patch_size)


def scaling_variants() -> dict:
    """{variant: builder of a fresh model} over SCALING_SIZES x SCALING_PATCHES, by size, then by patch from 4 to 1
    (Gflops rising along each size)."""
    return {variant_name(size, p): partial(dit_scaled, dim, depth, p)
            for size, (dim, depth) in SCALING_SIZES.items() for p in SCALING_PATCHES}


class GridPoint(NamedTuple):
    """One variant of a result: its size and patch, its parameters and Gflops (mean over seeds; the same for every
    seed), and the metric's mean with its 95% interval (t over seeds; Wilson over prompts for adherence)."""

    variant: str
    size: str
    patch: int
    params: float
    gflops: float
    value: Interval


def _measured(result: dict, metric: str) -> dict:
    variants = result.get("variants") if isinstance(result, dict) else None
    if not variants:
        raise ValueError("a scaling result must be a comparison result (results schema) with at least one variant.")
    for variant, entry in variants.items():
        parse_variant(variant)
        missing = [m for m in (metric, "params", "gflops") if m not in entry["metrics"]]
        if missing:
            raise ValueError(f"variant {variant!r} has no {', '.join(missing)}; measured: "
                             f"{', '.join(entry['metrics'])}.")
    return variants


def grid_points(result: dict, metric: str) -> list:
    """One GridPoint per variant of a scaling result, in the result's order."""
    variants = _measured(result, metric)
    summary = summarize(result, metric)
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    return [GridPoint(v, *parse_variant(v), mean(e["metrics"]["params"]), mean(e["metrics"]["gflops"]), summary[v])
            for v, e in variants.items()]


class PowerLaw(NamedTuple):
    """y = prefactor * x ** exponent, fitted by least squares on log y against log x. r: the correlation of log y
    with log x (-1 or 1 for an exact power law); low, high: the exponent's 95% t interval (n - 2 degrees of freedom);
    n: the number of points."""

    exponent: float
    prefactor: float
    r: float
    low: float
    high: float
    n: int

    def predict(self, x: float) -> float:
        return self.prefactor * x**self.exponent


def power_law_fit(xs, ys) -> PowerLaw:
    """Fit y = a * x ** k to positive, finite points (at least 3, with at least 2 distinct x): a line in log-log."""
    xs, ys = list(xs), list(ys)
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys must pair up, got {len(xs)} and {len(ys)} values.")
    if len(xs) < 3:
        raise ValueError(f"a power-law fit with an interval needs at least 3 points, got {len(xs)}.")
    for name, values in (("xs", xs), ("ys", ys)):
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values):
            raise ValueError(f"a power law is fitted in log-log, so {name} must be positive finite numbers, got "
                             f"{values!r}.")
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    n = len(lx)
    mx, my = sum(lx) / n, sum(ly) / n
    sxx = sum((x - mx) ** 2 for x in lx)
    syy = sum((y - my) ** 2 for y in ly)
    sxy = sum((x - mx) * (y - my) for x, y in zip(lx, ly))
    if sxx == 0:
        raise ValueError(f"every x is the same ({xs[0]!r}): no slope can be fitted.")
    slope = sxy / sxx
    residual = max(syy - slope * sxy, 0.0)  # the sum of squared residuals
    half = t_quantile(n - 2) * math.sqrt(residual / (n - 2) / sxx)
    r = sxy / math.sqrt(sxx * syy) if syy > 0 else 0.0  # a flat line: y does not depend on x at all
    return PowerLaw(slope, math.exp(my - slope * mx), r, slope - half, slope + half, n)


def fit_against(result: dict, metric: str, against: str = "gflops") -> PowerLaw:
    """The metric's per-variant means fitted as a power law of the variants' Gflops (or "params") across the grid:
    the DiT paper's Figure 8 asks whether quality tracks Gflops; against="params" asks the same of parameters."""
    if against not in ("gflops", "params"):
        raise ValueError(f"against must be 'gflops' or 'params', got {against!r}.")
    points = grid_points(result, metric)
    return power_law_fit([getattr(p, against) for p in points], [p.value.mean for p in points])


def patch_contrasts(result: dict, metric: str) -> dict:
    """{(size, small patch, large patch): the paired difference small - large over the shared seeds} for every two
    patches of each size in the result: the same width and depth (nearly the same parameters), 4x or 16x the tokens.
    For a metric in results.LOWER_IS_BETTER a negative difference means the smaller patch is better."""
    by_size = {}
    for point in grid_points(result, metric):
        by_size.setdefault(point.size, []).append(point.patch)
    return {(size, small, large): difference(result, metric, variant_name(size, small), variant_name(size, large))
            for size, patches in by_size.items() for small in patches for large in patches if small < large}


def trend(law: PowerLaw) -> str:
    """"falls" or "rises" where the exponent's 95% interval excludes zero on that side, else "inconclusive"."""
    return "falls" if law.high < 0 else "rises" if law.low > 0 else "inconclusive"


def better(metric: str) -> str:
    """"lower" or "higher": which way the metric improves."""
    return "lower" if metric in LOWER_IS_BETTER else "higher"


def _plain_log_axis(axis) -> None:
    """Label a log axis with plain numbers ("0.002", not "2 x 10^-3"): every tick on a short axis (where no power of
    ten may fall), else the powers of ten and the minor ticks at 2 and 5 times them."""
    from matplotlib.ticker import FuncFormatter

    low, high = axis.get_view_interval()
    lead = lambda v: round(v / 10 ** math.floor(math.log10(v)))  # noqa: E731  (the leading digit)
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if high < 3 * low or lead(v) in (2, 5) else ""))


def plot_scaling(result: dict, metric: str = "frechet_single", ax=None, fit: bool = True):
    """The DiT paper's picture on our grid: the metric (mean and 95% interval) against Gflops on log-log axes, one
    colour per model size, each size's patches joined by a line (p4 -> p2 -> p1, Gflops rising); with fit, the
    power law across all points as a dashed line, its exponent and r in the legend."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    points = grid_points(result, metric)
    sizes = list(dict.fromkeys(p.size for p in points))
    for size, colour in zip(sizes, plt.cm.viridis([i / max(len(sizes) - 1, 1) * 0.85 for i in range(len(sizes))])):
        mine = sorted((p for p in points if p.size == size), key=lambda p: p.gflops)
        x, y = [p.gflops for p in mine], [p.value.mean for p in mine]
        low = [p.value.mean - p.value.low if math.isfinite(p.value.low) else 0.0 for p in mine]
        high = [p.value.high - p.value.mean if math.isfinite(p.value.high) else 0.0 for p in mine]
        ax.errorbar(x, y, yerr=[low, high], color=colour, marker="o", capsize=3,
                    label=f"{size} ({mine[0].params / 1e6:.2f} M)")
        for p in mine:  # sizes alternate above and below, as a small size at patch 2 may cost what a big one at 4 does
            ax.annotate(f"/{p.patch}", (p.gflops, p.value.mean), textcoords="offset points",
                        xytext=(4, 4 if sizes.index(size) % 2 == 0 else -11), fontsize=7, color=colour)
    if fit and len(points) >= 3 and all(p.value.mean > 0 for p in points):
        law = fit_against(result, metric)
        xs = sorted(p.gflops for p in points)
        ax.plot([xs[0], xs[-1]], [law.predict(xs[0]), law.predict(xs[-1])], "--", color="grey",
                label=f"fit: exponent {law.exponent:+.2f}, r = {law.r:+.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log" if all(p.value.mean > 0 for p in points) else "linear")
    for axis in (ax.xaxis, ax.yaxis) if ax.get_yscale() == "log" else (ax.xaxis,):
        _plain_log_axis(axis)
    ax.set_xlabel("Gflops per forward (log)")
    ax.set_ylabel(f"{metric.replace('_', ' ')} ({better(metric)} is better)")
    ax.legend(fontsize=7)
    return ax


def plot_models(models: dict, ax=None):
    """The course's models on one chart: {label: {"params", "gflops", "adherence": Interval, "frechet"}} -> Gflops
    across (log), adherence up with its interval, bubble area in proportion to the parameters, Frechet distance in
    the label."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    for label, row in models.items():
        a = row["adherence"]
        ax.errorbar(row["gflops"], a.mean, yerr=[[a.mean - a.low], [a.high - a.mean]], color="grey", capsize=3)
        ax.scatter(row["gflops"], a.mean, s=row["params"] / 5e3, alpha=0.5)
        ax.annotate(f"{label}\n{row['params'] / 1e6:.2f} M params, Frechet {row['frechet']:.1f}",
                    (row["gflops"], a.mean), textcoords="offset points", xytext=(10, -12), fontsize=7)
    ax.set_xscale("log")
    ax.margins(x=0.35, y=0.15)
    _plain_log_axis(ax.xaxis)
    ax.set_xlabel("Gflops per forward (log)")
    ax.set_ylabel(f"single-object adherence (n={next(iter(models.values()))['adherence'].n})")
    ax.set_title("compute, size (bubble area), adherence and Frechet distance", fontsize=9)
    return ax
