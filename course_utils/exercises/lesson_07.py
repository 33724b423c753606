"""Lesson 07's exercises: how many parameters a patch size costs (almost none), and a power law fitted by hand."""

import math
import random

from ..scaling import SCALING_SIZES, dit_scaled, power_law_fit
from .base import Wrong, call, exercise


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


@exercise("07.1", "patch_params", "only two layers see a whole patch: the patch embedding, a Linear from p * p * C "
          "numbers to dim, and the final layer's Linear from dim back to p * p * C; count weights and biases of both.")
def check_patch_params(patch_params):
    for size, (dim, depth) in SCALING_SIZES.items():
        for p in (1, 2, 4):
            model = dit_scaled(dim, depth, p)
            expected = count(model.x_embedder) + count(model.final_layer.linear)
            got = call(patch_params, dim, p)
            if not isinstance(got, int) or isinstance(got, bool):
                raise Wrong(f"patch_params must return a whole number of parameters, got {type(got).__name__}.")
            if got != expected:
                raise Wrong(f"patch_params({dim}, {p}) = {got:,}, but the patch embedding and the final linear layer "
                            f"of {size} at patch {p} hold {expected:,} parameters.")
    w, d = SCALING_SIZES["w96d3"]
    ratio = count(dit_scaled(w, d, 1)) / count(dit_scaled(w, d, 4))
    return (f"from patch 4 to patch 1, w96d3 keeps {ratio:.1%} of its parameters (the patch layers shrink) while its "
            f"tokens grow 16x: a smaller patch buys compute, not parameters, which is why the DiT paper plots FID "
            f"against Gflops.")


CASES = [(2.0, -0.5), (0.3, 0.25), (40.0, -1.0)]  # (prefactor, exponent) of exact power laws


@exercise("07.2", "fit_power_law", "take logs: log y = log a + k log x is a line. Fit it by least squares (slope = "
          "covariance of log x and log y over the variance of log x), then a = exp(intercept).")
def check_fit_power_law(fit_power_law):
    xs = [0.0005, 0.002, 0.006, 0.02, 0.05]
    for a, k in CASES:
        got = call(fit_power_law, xs, [a * x**k for x in xs])
        if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(v, (int, float)) for v in got)):
            raise Wrong(f"answer a pair (exponent, prefactor) of numbers, got {got!r}.")
        if not (math.isclose(got[0], k, abs_tol=1e-6) and math.isclose(got[1], a, rel_tol=1e-6)):
            raise Wrong(f"for y = {a} * x ** {k} exactly you found exponent {got[0]!r} and prefactor {got[1]!r}.")
    rng = random.Random(7)
    ys = [30 * x**-0.3 * math.exp(rng.gauss(0, 0.3)) for x in xs]
    exponent, prefactor = call(fit_power_law, xs, ys)
    law = power_law_fit(xs, ys)
    if not (math.isclose(exponent, law.exponent, rel_tol=1e-6) and math.isclose(prefactor, law.prefactor,
                                                                                  rel_tol=1e-6)):
        raise Wrong(f"exact power laws come out right, but on noisy points your fit (exponent {exponent:.4f}, "
                    f"prefactor {prefactor:.4f}) is not the least-squares line in log-log (exponent "
                    f"{law.exponent:.4f}, prefactor {law.prefactor:.4f}): fit log y, not y.")
    return (f"it recovers exact power laws and matches scaling.power_law_fit on noisy points (exponent "
            f"{law.exponent:.3f}, r = {law.r:.2f}; 95% interval of the exponent [{law.low:.2f}, {law.high:.2f}] from "
            f"{law.n} points). Try it on your run's Frechet distances against Gflops.")
