"""Lesson 04's exercises: which conditioning starts as the identity, the most time-dependent modulation channel, a
paired interval by hand, and a DiT at patch 1 against the U-Net's compute."""

import math

import torch

from ..checkpoint import load_model
from ..data import Tokenizer
from ..dit import CONDITIONINGS, dit_small
from ..explorers import ADALN_CAPTIONS, adaln_view
from ..latents import load_latents
from ..results import difference, load_result, verdict
from ..unet import unet_small
from .base import Wrong, call, exercise, ratio


def identity_blocks(conditioning: str) -> bool:
    """Whether every block of a freshly built dit_small(conditioning) returns its input unchanged."""
    torch.manual_seed(0)
    model, same = dit_small(conditioning), []
    hooks = [block.register_forward_hook(lambda m, args, out: same.append(torch.equal(out, args[0])))
             for block in model.blocks]
    model(torch.randn(2, 4, 8, 8), torch.rand(2), Tokenizer().encode(["two small red circles"] * 2))
    for hook in hooks:
        hook.remove()
    return all(same)


@exercise("04.1", "identity_at_init", "register a forward hook on each of model.blocks that compares the block's "
          "output with its input (torch.equal), run one forward pass, and do it for each of CONDITIONINGS.")
def check_identity_at_init(identity_at_init):
    names = isinstance(identity_at_init, (set, frozenset, list, tuple)) and set(identity_at_init) <= set(CONDITIONINGS)
    if not names:
        raise Wrong(f"answer a set of conditionings among {CONDITIONINGS}, got {identity_at_init!r}.")
    expected = {name for name in CONDITIONINGS if identity_blocks(name)}
    for name in CONDITIONINGS:
        if (name in identity_at_init) != (name in expected):
            raise Wrong(f"{name!r}: its blocks {'are' if name in expected else 'are not'} all the identity at init.")
    return (f"only {sorted(expected)}: its zero gates close every residual branch. Yet all four DiTs output zero at "
            f"init (their final layers start at zero); what adaLN-Zero adds is that every block starts as a no-op.")


@exercise("04.2", "most_changed_channel", "model.modulation(t, cond, block) returns (attention, MLP) ModulationOuts; "
          "take the attention one's .scale (shape (1, D)) at t = 0.1 and at t = 0.9 (t a tensor of shape (1,)) and "
          "the argmax of the absolute difference.")
def check_most_changed_channel(most_changed_channel):
    model, latent = load_model("dit"), load_latents("val", verbose=False).latents[:1]
    winners = {}
    for caption in ADALN_CAPTIONS[:3]:
        for block in (0, 3):
            scales = [adaln_view(model, latent, t=t, caption=caption, block=block)["scale"] for t in (0.1, 0.9)]
            expected = int(abs(scales[0] - scales[1]).argmax())
            got = call(most_changed_channel, model, caption, block)
            if got != expected:
                raise Wrong(f"for '{caption}' in block {block} you found channel {got!r}; the explorer's gains change "
                            f"most in channel {expected}.")
            winners[caption, block] = expected
    per_block = {b: {w for (c, bb), w in winners.items() if bb == b} for b in (0, 3)}
    same = all(len(w) == 1 for w in per_block.values())
    return (f"the most time-dependent channel of block 0 is {sorted(per_block[0])} and of block 3 "
            f"{sorted(per_block[3])} over three captions: "
            + ("the same whatever the caption, so these channels encode time (how noisy the input is), not content."
               if same else "it changes with the caption, so time and content share these channels."))


@exercise("04.3", "paired_interval", "the per-seed values are result['variants'][name]['metrics']['val_loss'] (seeds "
          "in result['variants'][name]['seeds']); take the differences seed by seed, then mean +- t_quantile(n - 1) * "
          "std / sqrt(n), with the sample std (n - 1 in the denominator).")
def check_paired_interval(paired_interval):
    if not (isinstance(paired_interval, tuple) and len(paired_interval) == 3):
        raise Wrong(f"answer a triple (mean, low, high), got {paired_interval!r}.")
    reference = load_result("conditioning")
    d = difference(reference, "val_loss", "adaln", "in_context")
    for name, got, expected in zip(("mean", "low", "high"), paired_interval, (d.mean, d.low, d.high)):
        if not isinstance(got, (int, float)) or not math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9):
            raise Wrong(f"the {name} {got!r} is not right (expected {expected:.5f}). "
                        + ("Use the sample std (ddof 1) and the t quantile of n - 1 degrees of freedom."
                           if name != "mean" else "Take the differences seed by seed: adaln minus in_context."))
    return (f"adaLN minus in-context: {d.mean:+.4f} [{d.low:+.4f}, {d.high:+.4f}] over {d.n} seeds, so the claim "
            f"'adaLN trains to a lower loss than in-context' is {verdict(reference, 'val_loss', 'adaln', 'in_context')}"
            f". Pairing removes what a seed does to both variants; go further and compare with unpaired intervals.")


@exercise("04.4", "gflops_ratio", "forward_gflops() counts one whole forward of any denoiser with torch's flop "
          "counter; divide dit_small(patch_size=1)'s by unet_small()'s.")
def check_gflops_ratio(gflops_ratio):
    expected = dit_small(patch_size=1).forward_gflops() / unet_small().forward_gflops()
    ratio(gflops_ratio, expected, "the ratio of the two models' forward_gflops() (DiT over U-Net)")
    return (f"the DiT at patch 1 (64 tokens) costs {expected:.2f}x the U-Net's compute per forward; at patch 2 it "
            f"costs {dit_small().forward_gflops() / unet_small().forward_gflops():.2f}x.")
