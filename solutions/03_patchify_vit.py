"""Reference solutions to lesson 03's exercises. Each block is what the exercise cell holds once filled in; try the
exercise first. Check a block with `check(KEY, NAME)` in the notebook; tests/test_exercises.py checks them all."""

# %% exercise 03.1
def unpatchify_by_hand(tokens, p, h, w, c):
    """(b, h * w, p * p * c) row-major patch tokens -> (b, c, h * p, w * p)."""
    b = tokens.shape[0]
    x = tokens.reshape(b, h, w, p, p, c)  # (b, grid row, grid col, patch row, patch col, c)
    x = x.permute(0, 5, 1, 3, 2, 4)  # (b, c, grid row, patch row, grid col, patch col)
    return x.reshape(b, c, h * p, w * p)


# %% exercise 03.2
def attention_share(tokens, dim):
    """The share of one transformer block's multiply-accumulates (MLP ratio 4) spent on the N^2 attention terms."""
    n, d = tokens, dim
    return 2 * n * n * d / (4 * n * d * d + 2 * n * n * d + 8 * n * d * d)


# %% exercise 03.3
from course_utils.patchify import patchify, unpatchify


def permute_patches(x, perm, p):
    """The latent x (b, c, h, w) with its p x p patches reordered: patch k of the result is patch perm[k] of x."""
    b, c, height, width = x.shape
    return unpatchify(patchify(x, p)[:, perm], p, height // p, width // p, c)


# %% exercise 03.4
from course_utils.dit import dit_tiny

gflops_ratio = dit_tiny(patch_size=1).gflops() / dit_tiny().gflops()
