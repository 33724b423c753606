"""Lesson 02's exercises: what the bottleneck attention costs, where the U-Net's error sits early in sampling, the
guidance scale, and the receptive field of the no-downsampling control."""

from functools import lru_cache

import torch

from ..checkpoint import load_model
from ..comparisons import get_comparison
from ..data import Tokenizer
from ..latents import load_latents
from ..metrics import evaluate, frequency_errors
from ..receptive_field import effective_receptive_field
from ..unet import unet_small
from .base import Wrong, choice, exercise


def cost(model) -> tuple:
    """(parameters, forward Gflops) of a denoiser."""
    return sum(p.numel() for p in model.parameters()), model.forward_gflops()


@exercise("02.1", "attention_cost", "build unet_small() and unet_small(attention=False); the share is 1 minus the "
          "ratio of the second's count to the first's, for the parameters and for forward_gflops().")
def check_attention_cost(attention_cost):
    if not (isinstance(attention_cost, tuple) and len(attention_cost) == 2):
        raise Wrong(f"answer a pair (parameter share, Gflops share), got {attention_cost!r}.")
    (p_with, f_with), (p_without, f_without) = cost(unet_small()), cost(unet_small(attention=False))
    expected = {"parameter": 1 - p_without / p_with, "Gflops": 1 - f_without / f_with}
    for (name, share), got in zip(expected.items(), attention_cost):
        if not isinstance(got, (int, float)) or abs(got - share) > 0.005:
            hint = " (a share is a fraction between 0 and 1, not a percentage)" if got and got > 1 else ""
            raise Wrong(f"the {name} share {got!r} is off: measured {share:.3f}{hint}.")
    return (f"the 2x2 bottleneck's attention holds {expected['parameter']:.1%} of the parameters and "
            f"{expected['Gflops']:.1%} of the compute: on 4 tokens attention is cheap, and it sees nothing that the "
            f"bottleneck's convolutions, whose field already covers the latent, cannot.")


@lru_cache(maxsize=1)
def unet_frequency_errors(n: int = 300) -> dict:
    """{t: frequency_errors} of the shipped U-Net at t = 0.3 and 0.7 on n validation latents."""
    val = load_latents("val", verbose=False)
    model = load_model("unet")
    return {t: frequency_errors(model, val.latents[:n], (val.ids[:n], val.mask[:n]), t=t) for t in (0.3, 0.7)}


@exercise("02.2", "low_share", "call frequency_errors(shipped, latents, cond, t=0.3) as in section 8 and divide the "
          "low-frequency error by the sum of the two.")
def check_low_share(low_share):
    errors = unet_frequency_errors()
    shares = {t: e["low_freq_error"] / (e["low_freq_error"] + e["high_freq_error"]) for t, e in errors.items()}
    if not isinstance(low_share, (int, float)) or not 0 <= low_share <= 1:
        raise Wrong(f"low_share is a fraction of the error between 0 and 1, got {low_share!r}.")
    if abs(low_share - shares[0.3]) > 0.03:
        raise Wrong(f"{low_share:.3f} is more than 0.03 from the check's measurement on 300 validation latents "
                    f"({shares[0.3]:.3f}). Did you use t = 0.3 and the shipped U-Net?")
    growth = errors[0.3]["low_freq_error"] / errors[0.7]["low_freq_error"]
    return (f"at t = 0.3 the low frequencies hold {shares[0.3]:.0%} of the error, at t = 0.7 {shares[0.7]:.0%}, "
            f"while the error itself is {growth:.0f}x larger early. A 2x2 block's mean is 1/4 of its numbers, so a "
            f"share near 25% is an error spread evenly over the frequencies: early in sampling, everything is "
            f"uncertain.")


@lru_cache(maxsize=1)
def cfg_sweep(n: int = 200) -> dict:
    """{cfg_scale: (adherence, Frechet distance)} of the shipped U-Net on n held-out single-object prompts."""
    model = load_model("unet")
    return {scale: tuple(evaluate(model, n=n, cfg_scale=scale)[k] for k in ("adherence", "frechet"))
            for scale in (1, 2, 4, 8)}


@exercise("02.3", "best_scale", "evaluate(shipped, n=200, cfg_scale=s) for s in 1, 2, 4, 8 and compare the "
          "'adherence' entries.")
def check_best_scale(best_scale):
    choice(best_scale, (1, 2, 4, 8))
    sweep = cfg_sweep()
    best = max(sweep, key=lambda s: sweep[s][0])
    rows = ", ".join(f"CFG {s}: {a:.1%} / {f:.1f}" for s, (a, f) in sweep.items())
    if best_scale != best:
        raise Wrong(f"the check measured adherence / Frechet distance on 200 prompts: {rows}. Which scale follows the "
                    f"prompts best?")
    return (f"{rows} (200 prompts each). Adherence peaks at CFG {best} while the Frechet distance keeps rising: "
            f"stronger guidance trades the variety of real images for the prompt, then overshoots.")


def control() -> torch.nn.Module:
    """Section 7's no-downsampling control (the `downsampling` comparison's), freshly built."""
    return get_comparison("downsampling").variants["no_downsampling"]()


def measured_field(model: torch.nn.Module, side: int = 48) -> int:
    """Rows of a side x side latent whose gradient reaches the centre output of a U-Net at t = 0.5."""
    torch.manual_seed(0)
    with torch.no_grad():
        model.conv_out.weight.normal_(0, 0.1)  # zero at init: give the output a gradient
    ids, mask = Tokenizer().encode(["two small red circles"])

    class AtFixedTime(torch.nn.Module):
        def forward(self, x):
            return model(x, torch.full((1,), 0.5), (ids, mask))

    grad = effective_receptive_field(AtFixedTime(), (4, side, side))
    return int((grad.sum(1) > 0).sum())


@exercise("02.4", "shallow_field", "count the 3x3 convolutions in a row: conv_in, two per residual block (the "
          "control has only the two in the middle) and conv_out; each adds 2 to a field of 1. Then measure as section "
          "3 does, on a (4, 48, 48) input, and count the rows of the gradient map that are not zero.")
def check_shallow_field(shallow_field):
    if not (isinstance(shallow_field, tuple) and len(shallow_field) == 2):
        raise Wrong(f"answer a pair (field of the chain of convolutions, rows the gradient reaches), got "
                    f"{shallow_field!r}.")
    model = control()
    convs = sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3) for m in model.modules())
    chain, reach = 1 + 2 * convs, measured_field(model)
    if shallow_field[0] != chain:
        raise Wrong(f"the chain of convolutions gives {shallow_field[0]!r}; count again: the control has {convs} 3x3 "
                    f"convolutions in a row.")
    if shallow_field[1] != reach:
        raise Wrong(f"the gradient reaches {shallow_field[1]!r} rows in your measurement, {reach} in the check's. Did "
                    f"you give conv_out non-zero weights (it starts at zero) and count rows with any non-zero entry?")
    return (f"the convolutions alone see {chain} latent pixels, yet the gradient reaches "
            f"all {reach} rows of a 48x48 latent: every GroupNorm averages over the whole map, so each pixel moves "
            f"every output a little. It passes only a mean and a variance per group of channels, not what is where: "
            f"the spatial field is still {chain} pixels, {chain // 2} to each side, short of the 10.7 between twins "
            f"two cells apart.")
