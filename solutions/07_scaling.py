"""Reference solutions to lesson 07's exercises. Each block is what the exercise cell holds once filled in; try the
exercise first. Check a block with `check(KEY, NAME)` in the notebook; tests/test_exercises.py checks them all."""

# %% exercise 07.1
def patch_params(dim, p, channels=4):
    """The parameters of the patch embedding and the final output projection of a DiT of width dim at patch p."""
    patch = p * p * channels  # the numbers in one patch
    embedding = patch * dim + dim  # Linear(p * p * C -> dim), weights and bias
    final = dim * patch + patch  # Linear(dim -> p * p * C), weights and bias
    return embedding + final


# %% exercise 07.2
import math


def fit_power_law(xs, ys):
    """(exponent, prefactor) of y = prefactor * x ** exponent, by least squares on log y against log x."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    slope = sum((x - mx) * (y - my) for x, y in zip(lx, ly)) / sum((x - mx) ** 2 for x in lx)
    return slope, math.exp(my - slope * mx)
