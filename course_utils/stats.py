"""95% intervals for the course's evidence: a t interval over seeds, the Wilson interval over prompts, the paired
difference of two variants measured on the same seeds, and the correlation of two measurements over runs.

A comparison is repeated over a handful of seeds, so the interval of a mean uses Student's t with n - 1 degrees of
freedom (not 1.96): with 3 seeds it is 4.30 standard errors wide on each side. The t quantile is computed here by
integrating the t density (no scipy), and the tests check it against the printed table.
"""

import math
from functools import lru_cache
from typing import NamedTuple

LEVEL = 0.95
Z = 1.959963984540054  # the standard normal's 97.5% quantile


class Interval(NamedTuple):
    """A mean (or proportion) and its 95% interval [low, high]; n is the number of values (seeds or prompts)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return format(self, ".4g")

    def __format__(self, spec: str) -> str:
        """f"{interval:.1%}" -> "29.6% [25.8%, 33.7%] (95%, n=500)": the spec formats the mean and both bounds."""
        spec = spec or ".4g"
        return f"{self.mean:{spec}} [{self.low:{spec}}, {self.high:{spec}}] (95%, n={self.n})"


def _t_cdf(x: float, df: int) -> float:
    """P(T <= x) for x >= 0 and Student's t with df degrees of freedom: 1/2 + the density integrated over [0, x]
    (Simpson's rule on 2,000 intervals, after t = tan(u) so the range is finite)."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def density(u):  # the t density at tan(u), times dt/du
        t = math.tan(u)
        return math.exp(log_c - (df + 1) / 2 * math.log1p(t * t / df)) / math.cos(u) ** 2

    top, k = math.atan(x), 2000
    h = top / k
    total = density(0) + density(top) + sum((4 if i % 2 else 2) * density(i * h) for i in range(1, k))
    return 0.5 + total * h / 3


@lru_cache(maxsize=256)
def t_quantile(df: int, p: float = 0.5 + LEVEL / 2) -> float:
    """The p-quantile (p >= 0.5) of Student's t with df >= 1 degrees of freedom (12.706 for df=1, 4.303 for 2)."""
    if not isinstance(df, int) or df < 1:
        raise ValueError(f"df must be an integer >= 1, got {df!r}.")
    if not 0.5 <= p < 1:
        raise ValueError(f"p must be in [0.5, 1), got {p!r}.")
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        high *= 2
    for _ in range(60):  # bisection to float precision
        mid = (low + high) / 2
        low, high = (mid, high) if _t_cdf(mid, df) < p else (low, mid)
    return (low + high) / 2


def _finite(values, what: str) -> list:
    values = [float(v) for v in values]
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what} must be a non-empty list of finite numbers, got {values!r}.")
    return values


def mean_interval(values) -> Interval:
    """The mean of per-seed values with its 95% t interval (infinitely wide for a single seed: one seed is a demo)."""
    values = _finite(values, "values")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return Interval(mean, -math.inf, math.inf, 1)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def wilson_interval(successes: int, n: int) -> Interval:
    """A proportion successes / n with its 95% Wilson score interval (sound near 0% and 100%, unlike p ± 1.96 SE)."""
    if not isinstance(n, int) or n < 1 or not isinstance(successes, int) or not 0 <= successes <= n:
        raise ValueError(f"need integers 0 <= successes <= n with n >= 1, got successes={successes!r}, n={n!r}.")
    p = successes / n
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n * n)) / (1 + Z**2 / n)
    low, high = (0.0 if successes == 0 else centre - half), (1.0 if successes == n else centre + half)
    return Interval(p, low, high, n)


def pooled_proportion(rates, n_per_seed: int) -> Interval:
    """Adherence pooled over seeds: rates (one per seed, each over n_per_seed prompts) -> the Wilson interval of all
    the prompts together (the binomial interval over prompts; the t interval over seeds is `mean_interval`)."""
    rates = _finite(rates, "rates")
    if not isinstance(n_per_seed, int) or n_per_seed < 1:
        raise ValueError(f"n_per_seed must be an integer >= 1, got {n_per_seed!r}.")
    successes = sum(round(r * n_per_seed) for r in rates)
    return wilson_interval(successes, n_per_seed * len(rates))


def paired_difference(a, b) -> Interval:
    """Variant a minus variant b measured on the same seeds: the mean of the per-seed differences with its t interval.
    Pairing removes what a seed does to both (the same data order, noise and initial draws)."""
    a, b = _finite(a, "a"), _finite(b, "b")
    if len(a) != len(b):
        raise ValueError(f"a paired difference needs one value per seed in both, got {len(a)} and {len(b)} values.")
    return mean_interval([x - y for x, y in zip(a, b)])


def correlation(x, y) -> Interval:
    """Pearson's r of paired values (one pair per run) with its 95% Fisher interval: tanh(atanh(r) ± Z / sqrt(n - 3)),
    which needs at least 4 pairs. Over a handful of runs it is wide: r = 0.5 from 10 runs is [-0.19, 0.86]."""
    x, y = _finite(x, "x"), _finite(y, "y")
    if len(x) != len(y) or len(x) < 4:
        raise ValueError(f"a correlation interval needs the same number of x and y values, at least 4; got {len(x)} "
                         f"and {len(y)}.")
    n, mx, my = len(x), sum(x) / len(x), sum(y) / len(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        raise ValueError("a correlation needs x and y that vary; one of them is constant.")
    r = max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))
    z, half = math.atanh(max(-1 + 1e-12, min(1 - 1e-12, r))), Z / math.sqrt(n - 3)
    return Interval(r, math.tanh(z - half), math.tanh(z + half), n)
