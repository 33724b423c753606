"""Reference solutions to lesson 04's exercises. Each block is what the exercise cell holds once filled in; try the
exercise first. Check a block with `check(KEY, NAME)` in the notebook; tests/test_exercises.py checks them all."""

# %% exercise 04.1
import torch

from course_utils.data import Tokenizer
from course_utils.dit import CONDITIONINGS, dit_small


def blocks_are_identity(conditioning):
    model, same = dit_small(conditioning), []
    for block in model.blocks:
        block.register_forward_hook(lambda module, args, out: same.append(torch.equal(out, args[0])))
    model(torch.randn(2, 4, 8, 8), torch.rand(2), Tokenizer().encode(["two small red circles"] * 2))
    return all(same)


identity_at_init = {name for name in CONDITIONINGS if blocks_are_identity(name)}


# %% exercise 04.2
import torch

from course_utils.data import Tokenizer


def most_changed_channel(model, caption, block):
    """The channel whose attention-branch scale in `block` differs most between t = 0.1 and t = 0.9."""
    cond = Tokenizer().encode([caption])
    early, late = (model.modulation(torch.tensor([t]), cond, block)[0].scale[0] for t in (0.1, 0.9))
    return int((early - late).abs().argmax())


# %% exercise 04.3
import math

from course_utils.results import load_result
from course_utils.stats import t_quantile

variants = load_result("conditioning")["variants"]
a, b = variants["adaln"], variants["in_context"]
seeds = [s for s in a["seeds"] if s in b["seeds"]]
diffs = [a["metrics"]["val_loss"][a["seeds"].index(s)] - b["metrics"]["val_loss"][b["seeds"].index(s)] for s in seeds]
n = len(diffs)
mean = sum(diffs) / n
half = t_quantile(n - 1) * math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1)) / math.sqrt(n)
paired_interval = (mean, mean - half, mean + half)


# %% exercise 04.4
from course_utils.dit import dit_small
from course_utils.unet import unet_small

gflops_ratio = dit_small(patch_size=1).forward_gflops() / unet_small().forward_gflops()
