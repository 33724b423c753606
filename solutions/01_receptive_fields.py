"""Reference solutions to lesson 01's exercises. Each block is what the exercise cell holds once filled in; try the
exercise first. Check a block with `check(KEY, NAME)` in the notebook; tests/test_exercises.py checks them all."""

# %% exercise 01.1
# conv(5): r = 5, jump 1; pool(2): r = 6, jump 2; conv(3, dilation 2) spans 5: r = 6 + 4 * 2 = 14;
# pool(3, 2): r = 14 + 2 * 2 = 18, jump 4; conv(3): r = 18 + 2 * 4 = 26.
field_and_jump = (26, 4)


# %% exercise 01.2
from course_utils.receptive_field import receptive_field, stack_layers


def smallest_depth(target, downsample_every):
    """The fewest 3x3 convs (a 2x2 pool after every `downsample_every`) whose field covers `target` pixels."""
    depth = 1
    while receptive_field(stack_layers(depth, downsample_every=downsample_every)) < target:
        depth += 1
    return depth


# %% exercise 01.3
import math


def predicted_std(depth):
    """Effective-field std of `depth` 3x3 box filters: `depth` independent offsets of variance 2/3 each."""
    return math.sqrt(2 * depth / 3)


# %% exercise 01.4
after_training = "narrower"
