"""Reference solutions to lesson 02's exercises. Each block is what the exercise cell holds once filled in; try the
exercise first. Check a block with `check(KEY, NAME)` in the notebook; tests/test_exercises.py checks them all."""

# %% exercise 02.1
from course_utils.unet import unet_small


def cost(model):
    return sum(p.numel() for p in model.parameters()), model.forward_gflops()


(params_with, gflops_with), (params_without, gflops_without) = cost(unet_small()), cost(unet_small(attention=False))
attention_cost = (1 - params_without / params_with, 1 - gflops_without / gflops_with)


# %% exercise 02.2
from course_utils.checkpoint import load_model
from course_utils.latents import load_latents
from course_utils.metrics import frequency_errors

val_set = load_latents("val")
errors = frequency_errors(load_model("unet"), val_set.latents[:300], (val_set.ids[:300], val_set.mask[:300]), t=0.3)
low_share = errors["low_freq_error"] / (errors["low_freq_error"] + errors["high_freq_error"])


# %% exercise 02.3
# Measured with (about a minute on 2 CPU cores):
#   shipped = course_utils.checkpoint.load_model("unet")
#   adherence = {s: course_utils.metrics.evaluate(shipped, n=200, cfg_scale=s)["adherence"] for s in (1, 2, 4, 8)}
#   best_scale = max(adherence, key=adherence.get)
best_scale = 2


# %% exercise 02.4
import torch

from course_utils.comparisons import get_comparison
from course_utils.data import Tokenizer
from course_utils.receptive_field import effective_receptive_field

control = get_comparison("downsampling").variants["no_downsampling"]()
convs = sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in control.modules())
with torch.no_grad():
    control.conv_out.weight.normal_(0, 0.1)  # zero at init: give the output a gradient
caption = Tokenizer().encode(["two small red circles"])


class AtFixedTime(torch.nn.Module):
    def forward(self, x):
        return control(x, torch.full((1,), 0.5), caption)


grad = effective_receptive_field(AtFixedTime(), (4, 48, 48))
shallow_field = (1 + 2 * convs, int((grad.sum(1) > 0).sum()))
