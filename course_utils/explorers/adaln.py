"""Lesson 04's explorer: what adaptive layer norm does to one block of a DiT (Peebles & Xie, 2023).

The condition c = (t, caption) sets a shift, scale and gate per channel; the sliders nudge one channel's values.
"""

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from ..adaln import modulate
from ..data import Tokenizer
from ..flow import interpolate
from ..vae import load_vae
from .base import Explorer, check_index, example_latent, float_slider, int_slider

ADALN_CAPTIONS = ("a large red circle in the top left", "a small blue square in the center",
                  "a yellow triangle above a green diamond", "two large white diamonds")


def nudged(values: torch.Tensor, channel: int, offset: float) -> torch.Tensor:
    """A copy of values (D,) with `offset` added to one channel."""
    values = values.clone()
    values[channel] += offset
    return values


@torch.no_grad()
def adaln_view(model, latent: torch.Tensor, t: float = 0.5, caption: str = ADALN_CAPTIONS[0], block: int = 0,
               channel: int = 0, shift: float = 0.0, scale: float = 0.0, gate: float = 0.0, seed: int = 0) -> dict:
    """What the AdaLN explorer shows for the attention branch of adaLN(-Zero) block `block` of a DiT.

    latent (1, C, s, s): the clean latent x1; noise drawn from `seed` makes x_t. The model's own block_input and
    modulation give the block's input tokens and its (shift, scale, gate); the sliders add `shift`, `scale` and
    `gate` to one `channel` (plain adaLN has no gate: it counts as ones). Returns {"normalised", "modulated": (N, D),
    "shift", "scale", "gate": (D,), "branch", "gated": (N, D), "channel", "kept", "text"}.
    """
    if not hasattr(model, "modulation") or not hasattr(model, "blocks"):
        raise ValueError(f"model must be a DiT with adaLN conditioning (e.g. dit_tiny('adaln_zero')), got "
                         f"{type(model).__name__}.")
    if not isinstance(latent, torch.Tensor) or latent.shape != (1, model.config.in_channels, *latent.shape[2:]) \
            or latent.ndim != 4:
        got = tuple(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
        raise ValueError(f"latent must be one clean latent (1, {model.config.in_channels}, s, s), got {got}.")
    check_index("block", block, len(model.blocks))
    check_index("channel", channel, model.config.dim)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
        raise ValueError(f"t must be a time in [0, 1] (0: noise, 1: data), got {t!r}.")
    device = next(model.parameters()).device
    cond = tuple(c.to(device) for c in Tokenizer(model.config.max_len).encode([caption]))  # (ids, mask), (1, L)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(seed))
    tt = torch.tensor([t], device=device)
    x_t = interpolate(noise, latent, tt.cpu()).to(device)  # (1, C, s, s)
    tokens, _, angles = model.block_input(x_t, tt, cond, block)  # (1, N, D)
    msa, _ = model.modulation(tt, cond, block)  # the attention branch's ModulationOut, each (1, D)
    gate_of_model = torch.ones_like(msa.shift) if msa.gate is None else msa.gate
    shifts, scales = nudged(msa.shift[0], channel, shift), nudged(msa.scale[0], channel, scale)  # (D,)
    gates = nudged(gate_of_model[0], channel, gate)  # (D,)
    target = model.blocks[block]
    normalised = target.norm1(tokens)  # (1, N, D)
    modulated = modulate(normalised, shifts[None], scales[None])  # (1, N, D)
    branch = target.attn(modulated, rope=angles)[0]  # (N, D): what attention would add
    gated = gates * branch  # (N, D)
    gain = 1 + scales
    order = torch.argsort(gain, descending=True)
    kept = gated.norm() / branch.norm().clamp(min=1e-12)
    text = (f"t = {t:.2f}, caption '{caption}', block {block}, channel {channel}\n"
            f"channel {channel}: shift {shifts[channel]:+.3f}, scale {scales[channel]:+.3f} "
            f"(gain {gain[channel]:.3f}), gate {gates[channel]:+.3f}\n"
            f"most amplified channels {order[:3].tolist()} (gain {gain[order[0]]:.2f}), most suppressed "
            f"{order[-3:].tolist()} (gain {gain[order[-1]]:.2f})\n"
            f"the gate keeps {kept:.1%} of the attention branch's update (norm ratio)")
    normalised, modulated, shifts, scales, gates, branch, gated = (
        z.float().cpu() for z in (normalised, modulated, shifts, scales, gates, branch, gated))
    return {"normalised": normalised[0].numpy(), "modulated": modulated[0].numpy(), "shift": shifts.numpy(),
            "scale": scales.numpy(), "gate": gates.numpy(), "branch": branch.numpy(), "gated": gated.numpy(),
            "channel": channel, "kept": float(kept), "text": text}


def draw_adaln(view: dict, fig: Figure):
    """(a) activations before / after modulation, (b) per-channel gain 1 + scale, (c) the gated residual update."""
    ax_hist, ax_gain, ax_gate = fig.subplots(1, 3)
    k = view["channel"]
    bins = np.linspace(-4, 4, 41)
    ax_hist.hist(view["normalised"].ravel(), bins=bins, alpha=0.5, density=True, label="normalised (all channels)")
    ax_hist.hist(view["modulated"].ravel(), bins=bins, alpha=0.5, density=True, label="modulated")
    ax_hist.axvline(view["modulated"][:, k].mean(), color="k", lw=1, label=f"channel {k} (mean)")
    ax_hist.set_title("(a) block input before / after AdaLN")
    ax_hist.legend(fontsize=7)
    gain = 1 + view["scale"]
    colours = ["tab:red" if i == k else ("tab:green" if g > 1 else "tab:gray") for i, g in enumerate(gain)]
    ax_gain.bar(np.arange(len(gain)), gain, color=colours, width=1.0)
    ax_gain.axhline(1, color="k", lw=0.8)
    ax_gain.set_xlabel("channel")
    ax_gain.set_title("(b) gain 1 + scale per channel")
    norm_branch = np.linalg.norm(view["branch"], axis=0)  # (D,)
    norm_gated = np.linalg.norm(view["gated"], axis=0)  # (D,)
    ax_gate.plot(norm_branch, lw=1, label="attention branch")
    ax_gate.plot(norm_gated, lw=1, label="after gate")
    ax_gate.plot(k, norm_gated[k], "ro")
    ax_gate.set_xlabel("channel")
    ax_gate.set_title(f"(c) residual update, {view['kept']:.0%} kept")
    ax_gate.legend(fontsize=7)
    fig.tight_layout()


def adaln_explorer(model, caption: str = ADALN_CAPTIONS[0], latent: torch.Tensor = None, vae=None) -> Explorer:
    """Sliders for t, block, channel and offsets to its shift / scale / gate; a choice of caption.

    latent (1, C, s, s): the clean latent to noise; default: the example scene encoded once by `vae` (default: the
    shipped VAE, loaded here once) at the model's training size.
    """
    model = model.eval()
    if latent is None:
        latent = example_latent(load_vae() if vae is None else vae, 4 * model.config.input_size)[1]
    controls = {
        "caption": widgets.Dropdown(options=ADALN_CAPTIONS, value=caption, description="caption"),
        "t": float_slider("t", 0.5, 0.0, 1.0, 0.05),
        "block": int_slider("block", 0, 0, len(model.blocks) - 1),
        "channel": int_slider("channel", 0, 0, model.config.dim - 1),
        "shift": float_slider("shift +", 0.0, -2.0, 2.0, 0.1),
        "scale": float_slider("scale +", 0.0, -2.0, 2.0, 0.1),
        "gate": float_slider("gate +", 0.0, -2.0, 2.0, 0.1),
    }
    rows = [["caption", "t", "block", "channel"], ["shift", "scale", "gate"]]
    return Explorer(lambda **values: adaln_view(model, latent, **values), draw_adaln, controls, figsize=(13, 3.6),
                    rows=rows)
