"""Reference solutions to lesson 05's exercises. Each block is what the exercise cell holds once filled in; try the
exercise first. Check a block with `check(KEY, NAME)` in the notebook; tests/test_exercises.py checks them all."""

# %% exercise 05.1
# Without positions a DiT cannot place anything, and single-object captions name a cell ("in the top left"): it loses
# on every kind of prompt, not only on "above" and "left of".
worse_on = "all"


# %% exercise 05.2
import math

from course_utils.rope import rope_frequencies


def wraparound(theta, dim):
    """The offset, in positions, at which the slowest channel pair of 1D RoPE (head dim `dim`) turns once around."""
    return 2 * math.pi / rope_frequencies(dim, theta)[-1].item()


# %% exercise 05.3
import torch


def off_axis(freqs):
    """freqs (..., 2) frequency vectors (f_row, f_col) -> (...) degrees (0 to 45) from the nearest image axis."""
    angle = torch.rad2deg(torch.atan2(freqs[..., 1], freqs[..., 0])) % 90  # the axes repeat every 90 degrees
    return torch.minimum(angle, 90 - angle)


# %% exercise 05.4
import torch

from course_utils.patchify import sincos_1d


def sincos_table(dim, h, w, scale):
    """(h * w, dim) 2D sine-cosine table of an h x w grid at positions (row * scale, col * scale), row-major."""
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, rows.flatten() * scale), sincos_1d(dim // 2, cols.flatten() * scale)], dim=1)
