"""The interactive explorers: a pure `*_view` function computes what to draw from the slider values,
a `draw_*` function draws it on one matplotlib figure, and `Explorer` wires sliders to both.

The figure is rendered to PNG into an ipywidgets Image and the numbers into an HTML widget, so an
explorer behaves the same in JupyterLab, in a headless test and in a real browser.
"""

import functools
import html
import io

import ipywidgets as widgets
import matplotlib.patches as mpatches
import numpy as np
import torch
from matplotlib.figure import Figure

from .attention import block_macs
from .data import Tokenizer, render_shapes, to_float
from .flow import euler_sample, guided_velocity
from .patchify import patchify
from .receptive_field import build_stack, effective_receptive_field, erf_std, receptive_field_table, stack_layers
from .rope import apply_rope, axial_angles, mixed_angles, mixed_frequencies, rope_angles_1d, rope_frequencies
from .vae import load_vae


class Explorer:
    """Sliders -> view = compute(**values) -> draw(view, figure) -> PNG image, and view["text"] -> HTML.

    controls: {name: ipywidgets control}, laid out in one row or in `rows` (lists of names);
    `view`, `text` and `image` hold what is shown now.
    """

    def __init__(self, compute, draw, controls: dict, figsize=(12, 3.8), dpi: int = 80, rows=None):
        self.compute, self.draw, self.controls, self.dpi = compute, draw, controls, dpi
        self.figure = Figure(figsize=figsize)
        self.image = widgets.Image(format="png").add_class("explorer-figure")
        self.text = widgets.HTML().add_class("explorer-text")
        for control in controls.values():
            control.observe(self.update, names="value")
        rows = rows or [list(controls)]
        panel = [widgets.HBox([controls[name] for name in row]) for row in rows]
        self.widget = widgets.VBox([*panel, self.image, self.text])
        self.update()

    def update(self, change=None):
        self.view = self.compute(**{name: c.value for name, c in self.controls.items()})
        self.figure.clear()
        self.draw(self.view, self.figure)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=self.dpi, bbox_inches="tight")
        self.image.value = buffer.getvalue()
        self.text.value = f"<pre>{html.escape(self.view['text'])}</pre>"

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def _slider(description, value, low, high, step=1):
    return widgets.IntSlider(value=value, min=low, max=high, step=step, description=description,
                             continuous_update=False, style={"description_width": "initial"})


# ---- lesson 01: receptive fields -------------------------------------------------------------------


def receptive_field_view(depth: int, kernel: int = 3, dilation: int = 1, downsample_every: int = 0,
                         image_size: int = 32, max_depth: int = 16) -> dict:
    """What the receptive-field explorer shows for these slider values.

    Returns {"rf", "jump", "square": (x0, y0, side) over the image, "erf": (H, W) array, "erf_std",
    "depths", "rf_plain", "rf_down", "text"}. The effective field is measured on a random linear stack
    of the same layers (8 channels) at the image's size.
    """
    max_pools = int(np.log2(image_size)) - 2  # keep at least a 4x4 map
    layers = stack_layers(depth, kernel, dilation, downsample_every, max_pools)
    row = receptive_field_table(layers)[-1]
    rf, jump = row["rf"], row["jump"]
    erf = effective_receptive_field(build_stack(layers), (3, image_size, image_size)).numpy()
    depths = np.arange(1, max_depth + 1)
    every = downsample_every or 2
    rf_plain = [receptive_field_table(stack_layers(d, kernel, dilation))[-1]["rf"] for d in depths]
    rf_down = [receptive_field_table(stack_layers(d, kernel, dilation, every, max_pools))[-1]["rf"] for d in depths]
    centre = image_size // 2
    side = min(rf, 4 * image_size)
    sees = "the whole image" if rf >= image_size else f"{rf}x{rf} of {image_size}x{image_size} pixels"
    text = (f"depth {depth}, kernel {kernel}, dilation {dilation}, "
            f"downsample {'every ' + str(downsample_every) + ' layers' if downsample_every else 'never'}\n"
            f"receptive field: {rf} pixels (jump {jump}); one output unit sees {sees}\n"
            f"effective receptive field: std {erf_std(torch.from_numpy(erf)):.2f} pixels")
    return {"rf": rf, "jump": jump, "square": (centre - side / 2, centre - side / 2, side), "erf": erf,
            "erf_std": erf_std(torch.from_numpy(erf)), "depths": depths, "rf_plain": rf_plain,
            "rf_down": rf_down, "downsample_every": every, "depth": depth, "layers": layers, "text": text}


@functools.lru_cache(maxsize=1)
def _rf_background(size: int = 32):
    return render_shapes(1, seed=11, size=size, mode="relation").images[0].permute(1, 2, 0).numpy()


def draw_receptive_field(view: dict, fig: Figure):
    """(a) the field as a square over a Shapes image, (b) the measured effective field, (c) field vs depth."""
    ax_img, ax_erf, ax_curve = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.4]})
    image = _rf_background()
    ax_img.imshow(image, extent=(0, 32, 32, 0), interpolation="nearest")
    x0, y0, side = view["square"]
    ax_img.add_patch(mpatches.Rectangle((x0, y0), side, side, fill=False, edgecolor="white", linewidth=2))
    ax_img.plot(16, 16, "w+", markersize=10)
    ax_img.set_xlim(0, 32)
    ax_img.set_ylim(32, 0)
    ax_img.set_title(f"(a) receptive field: {view['rf']} px")
    ax_erf.imshow(view["erf"], cmap="magma")
    ax_erf.set_title(f"(b) effective field, std {view['erf_std']:.1f} px")
    for ax in (ax_img, ax_erf):
        ax.set_xticks([])
        ax.set_yticks([])
    ax_curve.plot(view["depths"], view["rf_plain"], "o-", ms=3, label="plain convs (linear)")
    ax_curve.plot(view["depths"], view["rf_down"], "s-", ms=3, label=f"pool every {view['downsample_every']}")
    ax_curve.axhline(32, color="gray", ls="--", lw=1)
    ax_curve.text(1, 34, "image side (32)", fontsize=8, color="gray")
    ax_curve.axhline(8, color="gray", ls=":", lw=1)
    ax_curve.text(1, 9, "latent side (8)", fontsize=8, color="gray")
    ax_curve.axvline(view["depth"], color="k", lw=1)
    ax_curve.set_yscale("log", base=2)
    ax_curve.set_xlabel("depth (conv layers)")
    ax_curve.set_ylabel("receptive field (px)")
    ax_curve.set_title("(c) receptive field vs depth")
    ax_curve.legend(fontsize=8)
    fig.tight_layout()


def receptive_field_explorer(depth: int = 4, kernel: int = 3, dilation: int = 1, downsample_every: int = 0) -> Explorer:
    """Sliders for depth, kernel size, dilation and 'downsample every N layers' (0 = never)."""
    controls = {
        "depth": _slider("depth", depth, 1, 16),
        "kernel": _slider("kernel", kernel, 1, 7, step=2),
        "dilation": _slider("dilation", dilation, 1, 4),
        "downsample_every": _slider("downsample every", downsample_every, 0, 4),
    }
    return Explorer(receptive_field_view, draw_receptive_field, controls)


# ---- lesson 03: patches and tokens ------------------------------------------------------------------

DIT_S = {"depth": 12, "dim": 384, "heads": 6}  # the DiT paper's S models


@functools.lru_cache(maxsize=2)
def _example_latent(image_size: int) -> tuple:
    """A fixed Shapes image (H, W, 3) uint8 and its VAE latent (1, 4, H/4, W/4)."""
    scene = render_shapes(1, seed=21, size=image_size, mode="relation")
    return scene.images[0].permute(1, 2, 0).numpy(), load_vae().encode(to_float(scene.images))


def patch_view(patch_size: int, image_size: int = 32) -> dict:
    """What the patch explorer shows: the latent of a Shapes image cut into patch_size x patch_size patches.

    Returns {"image" (H, W, 3), "latent" (4, h, w), "tokens" (N, p*p*4), "grid" (patches per side), "n_tokens",
    "attention_entries", "gflops" (DiT-S-like stack of 12 blocks, multiply-accumulates), "text"}.
    """
    image, latent = _example_latent(image_size)  # (H, W, 3), (1, 4, h, w)
    tokens = patchify(latent, patch_size)[0]  # (N, p*p*4)
    n, grid = tokens.shape[0], latent.shape[-1] // patch_size
    gflops = DIT_S["depth"] * block_macs(n, DIT_S["dim"]) / 1e9
    side = latent.shape[-1]
    text = (f"image {image_size}x{image_size} -> latent 4x{side}x{side}; patch {patch_size}x{patch_size} "
            f"(covers {4 * patch_size}x{4 * patch_size} image pixels)\n"
            f"tokens: {grid}x{grid} = {n}, each of {tokens.shape[1]} numbers\n"
            f"attention matrix: {n}x{n} = {n * n:,} entries per head\n"
            f"DiT-S-like stack (12 blocks, width 384): {gflops:.3f} Gflops per image")
    return {"image": image, "latent": latent[0].numpy(), "tokens": tokens.numpy(),
            "grid": grid, "patch_size": patch_size, "n_tokens": n, "attention_entries": n * n, "gflops": gflops,
            "text": text}


def draw_patches(view: dict, fig: Figure):
    """(a) the patch grid over the image, (b) over the latent (channel 0), (c) the token sequence."""
    ax_img, ax_lat, ax_tok = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1.6]})
    size, lsize, g = view["image"].shape[0], view["latent"].shape[-1], view["grid"]
    ax_img.imshow(view["image"], extent=(0, size, size, 0), interpolation="nearest")
    ax_lat.imshow(view["latent"][0], extent=(0, lsize, lsize, 0), cmap="RdBu_r", interpolation="nearest")
    for ax, side in ((ax_img, size), (ax_lat, lsize)):
        for k in range(1, g):
            ax.axhline(k * side / g, color="white" if ax is ax_img else "k", lw=1)
            ax.axvline(k * side / g, color="white" if ax is ax_img else "k", lw=1)
        ax.set_xticks([])
        ax.set_yticks([])
    if g <= 8:
        for k in range(g * g):
            r, c = divmod(k, g)
            ax_lat.text((c + 0.5) * lsize / g, (r + 0.5) * lsize / g, str(k), ha="center", va="center", fontsize=7)
    ax_img.set_title(f"(a) image, {g}x{g} patches")
    ax_lat.set_title("(b) latent channel 0, token ids")
    ax_tok.imshow(view["tokens"], aspect="auto", cmap="RdBu_r", interpolation="nearest")
    ax_tok.set_xlabel("features (patch row, patch column, channel)")
    ax_tok.set_ylabel("token (row-major)")
    ax_tok.set_title(f"(c) {view['n_tokens']} tokens x {view['tokens'].shape[1]} features")
    fig.tight_layout()


def patch_explorer(patch_size: int = 2, image_size: int = 32) -> Explorer:
    """Sliders for the patch size (divisors of the latent side) and the image size."""
    controls = {
        "patch_size": widgets.SelectionSlider(options=[1, 2, 4, 8], value=patch_size, description="patch size",
                                              continuous_update=False),
        "image_size": widgets.SelectionSlider(options=[32, 64], value=image_size, description="image size",
                                              continuous_update=False),
    }
    return Explorer(patch_view, draw_patches, controls)


# ---- lesson 04: adaptive layer norm ---------------------------------------------------------------------

ADALN_CAPTIONS = ("a large red circle in the top left", "a small blue square in the center",
                  "a yellow triangle above a green diamond", "two large white diamonds")


@torch.no_grad()
def adaln_view(model, t: float = 0.5, caption: str = ADALN_CAPTIONS[0], block: int = 0, channel: int = 0,
               shift: float = 0.0, scale: float = 0.0, gate: float = 0.0, seed: int = 0) -> dict:
    """What the AdaLN explorer shows for one adaLN(-Zero) block of a DiT.

    A noisy latent x_t (a fixed Shapes latent and fixed noise) runs through the blocks before `block`;
    the block's modulation MLP turns c = (t, caption) into shift, scale and gate
    for the attention branch. The sliders add `shift`, `scale` and `gate` to one `channel`.
    Returns {"normalised", "modulated": (N, D), "shift", "scale", "gate": (D,), "branch", "gated": (N, D),
    "channel", "text"}.
    """
    ids, mask = Tokenizer(model.max_len).encode([caption])
    x1 = _example_latent(4 * model.config["input_size"])[1]  # (1, 4, side, side)
    x0 = torch.randn(x1.shape, generator=torch.Generator().manual_seed(seed))
    tt = torch.tensor([t])
    xt = (1 - t) * x0 + t * x1
    tokens, angles = model.embed_patches(xt)  # (1, N, D), rotary angles per block
    c = model.t_embedder(tt) + model.c_embedder(ids, mask)  # (1, D)
    for previous, rope in zip(model.blocks[:block], angles):
        tokens = previous(tokens, c, rope)
    target = model.blocks[block]
    m = {k: v[0].clone() for k, v in target.modulation_params(c).items()}
    m["shift_msa"][channel] += shift
    m["scale_msa"][channel] += scale
    m["gate_msa"][channel] += gate
    normalised = target.norm1(tokens)[0]  # (N, D)
    modulated = normalised * (1 + m["scale_msa"]) + m["shift_msa"]
    branch = target.attn(modulated[None], rope=angles[block])[0]  # (N, D): what attention would add
    gated = m["gate_msa"] * branch
    gain = 1 + m["scale_msa"]
    order = torch.argsort(gain, descending=True)
    kept = gated.norm() / branch.norm().clamp(min=1e-12)
    text = (f"t = {t:.2f}, caption '{caption}', block {block}, channel {channel}\n"
            f"channel {channel}: shift {m['shift_msa'][channel]:+.3f}, scale {m['scale_msa'][channel]:+.3f} "
            f"(gain {gain[channel]:.3f}), gate {m['gate_msa'][channel]:+.3f}\n"
            f"most amplified channels {order[:3].tolist()} (gain {gain[order[0]]:.2f}), most suppressed "
            f"{order[-3:].tolist()} (gain {gain[order[-1]]:.2f})\n"
            f"the gate keeps {kept:.1%} of the attention branch's update (norm ratio)")
    return {"normalised": normalised.numpy(), "modulated": modulated.numpy(), "shift": m["shift_msa"].numpy(),
            "scale": m["scale_msa"].numpy(), "gate": m["gate_msa"].numpy(), "branch": branch.numpy(),
            "gated": gated.numpy(), "channel": channel, "kept": float(kept), "text": text}


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
    norm_branch = np.linalg.norm(view["branch"], axis=0)
    norm_gated = np.linalg.norm(view["gated"], axis=0)
    ax_gate.plot(norm_branch, lw=1, label="attention branch")
    ax_gate.plot(norm_gated, lw=1, label="after gate")
    ax_gate.plot(k, norm_gated[k], "ro")
    ax_gate.set_xlabel("channel")
    ax_gate.set_title(f"(c) residual update, {view['kept']:.0%} kept")
    ax_gate.legend(fontsize=7)
    fig.tight_layout()


def adaln_explorer(model, caption: str = ADALN_CAPTIONS[0]) -> Explorer:
    """Sliders for t, block, channel and offsets to its shift / scale / gate; a choice of caption."""
    model = model.eval()
    dim = model.config["dim"]

    def offset(description):
        return widgets.FloatSlider(value=0.0, min=-2.0, max=2.0, step=0.1, description=description,
                                   continuous_update=False)

    controls = {
        "caption": widgets.Dropdown(options=ADALN_CAPTIONS, value=caption, description="caption"),
        "t": widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="t", continuous_update=False),
        "block": _slider("block", 0, 0, len(model.blocks) - 1),
        "channel": _slider("channel", 0, 0, dim - 1),
        "shift": offset("shift +"),
        "scale": offset("scale +"),
        "gate": offset("gate +"),
    }
    rows = [["caption", "t", "block", "channel"], ["shift", "scale", "gate"]]
    return Explorer(lambda **values: adaln_view(model, **values), draw_adaln, controls, figsize=(13, 3.6), rows=rows)


# ---- lesson 05: rotary position embeddings --------------------------------------------------------------


def rope_1d_view(position: int = 3, pair: int = 0, theta: float = 10_000.0, dim: int = 16, max_offset: int = 32,
                 seed: int = 0) -> dict:
    """What the 1D RoPE explorer shows: a query at `position` m, its channel pairs as rotated 2D vectors, and
    the score q_m . k_n against the offset m - n for a fixed random q and k.

    Returns {"vectors" (dim/2, 2): each pair of the all-(1, 0) query after rotation, "angles" (dim/2,),
    "offsets" (2 max_offset + 1,), "scores" (query at m), "scores_at_0" (the same offsets, query at 0),
    "pair_term" (cos(offset * w_pair)), "wavelength", "text"}.
    """
    freqs = rope_frequencies(dim, theta)  # (dim/2,)
    angles = position * freqs
    unit = torch.tensor([1.0, 0.0]).repeat(dim // 2)  # every pair points along x before rotation
    vectors = apply_rope(unit[None], angles[None])[0].reshape(-1, 2)  # (dim/2, 2)
    q, k = torch.randn(2, dim, generator=torch.Generator().manual_seed(seed))
    offsets = torch.arange(-max_offset, max_offset + 1)

    def score_curve(m):
        q_rot = apply_rope(q[None], rope_angles_1d(torch.tensor([m]), dim, theta))  # (1, dim)
        k_rot = apply_rope(k[None].expand(len(offsets), -1), rope_angles_1d(m - offsets, dim, theta))
        return (k_rot @ q_rot[0]).double()  # (offsets,)

    scores, scores_at_0 = score_curve(position), score_curve(0)
    gap = (scores - scores_at_0).abs().max().item()
    wavelength = 2 * np.pi / freqs[pair].item()
    text = (f"query at position m = {position}, theta {theta:g}, head dim {dim} ({dim // 2} pairs)\n"
            f"pair {pair}: frequency {freqs[pair]:.4g} rad per position, turned by {angles[pair]:.3f} rad "
            f"({np.degrees(angles[pair].item()) % 360:.1f} degrees); one full turn every {wavelength:.1f} positions\n"
            f"score q_m . k_n over offsets m - n: largest change when the query moves from 0 to m: {gap:.1e} "
            f"(it depends only on m - n)")
    return {"vectors": vectors.numpy(), "angles": angles.numpy(), "offsets": offsets.numpy(),
            "scores": scores.numpy(), "scores_at_0": scores_at_0.numpy(),
            "pair_term": np.cos(offsets.numpy() * freqs[pair].item()), "pair": pair, "position": position,
            "wavelength": wavelength, "gap": gap, "text": text}


def draw_rope_1d(view: dict, fig: Figure):
    """(a) the query's channel pairs as rotated vectors, (b) score against offset, (c) the chosen pair's term."""
    ax_vec, ax_score, ax_pair = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1.5, 1.5]})
    circle = np.linspace(0, 2 * np.pi, 200)
    ax_vec.plot(np.cos(circle), np.sin(circle), color="lightgray", lw=1)
    for j, (x, y) in enumerate(view["vectors"]):
        chosen = j == view["pair"]
        ax_vec.annotate("", (x, y), (0, 0), arrowprops={"arrowstyle": "->", "lw": 2.5 if chosen else 1,
                                                          "color": "tab:red" if chosen else "tab:blue"})
    ax_vec.set_xlim(-1.2, 1.2)
    ax_vec.set_ylim(-1.2, 1.2)
    ax_vec.set_aspect("equal")
    ax_vec.set_xticks([])
    ax_vec.set_yticks([])
    ax_vec.set_title(f"(a) pairs at m = {view['position']} (red: pair {view['pair']})")
    ax_score.plot(view["offsets"], view["scores_at_0"], color="lightgray", lw=4, label="query at 0")
    ax_score.plot(view["offsets"], view["scores"], color="tab:blue", lw=1.2, label=f"query at {view['position']}")
    ax_score.set_xlabel("offset m - n")
    ax_score.set_title("(b) score q_m . k_n")
    ax_score.legend(fontsize=7)
    ax_pair.plot(view["offsets"], view["pair_term"], color="tab:red")
    ax_pair.set_xlabel("offset m - n")
    ax_pair.set_title(f"(c) pair {view['pair']}: cos(offset * w), period {view['wavelength']:.1f}")
    fig.tight_layout()


def rope_1d_explorer(position: int = 3, pair: int = 0, dim: int = 16) -> Explorer:
    """Sliders for the query position m, the channel pair, and theta."""
    controls = {
        "position": _slider("position m", position, 0, 64),
        "pair": _slider("pair", pair, 0, dim // 2 - 1),
        "theta": widgets.SelectionSlider(options=[10.0, 100.0, 1000.0, 10000.0], value=10000.0, description="theta",
                                         continuous_update=False),
    }
    return Explorer(lambda **values: rope_1d_view(dim=dim, **values), draw_rope_1d, controls, figsize=(12, 3.6))


def _score_map(angles: torch.Tensor, query: int, h: int, w: int) -> np.ndarray:
    """Score of the query token against every token of the grid, for q = k = all ones; 1 at the query itself."""
    ones = torch.ones(angles.shape[0], 2 * angles.shape[1])
    rotated = apply_rope(ones, angles)  # (N, d)
    return (rotated @ rotated[query] / ones.shape[1]).reshape(h, w).double().numpy()


def _separability(score_map: np.ndarray) -> float:
    """Largest part of a score map that a sum f(row) + g(column) cannot explain (0 for axial RoPE)."""
    s = score_map
    return float(np.abs(s - s.mean(1, keepdims=True) - s.mean(0, keepdims=True) + s.mean()).max())


def rope_2d_view(row: int = 7, col: int = 7, direction: float = 45.0, kind: str = "both", grid: int = 15,
                 head_dim: int = 16, theta: float = 100.0) -> dict:
    """What the 2D RoPE explorer shows: the score map from the query token (row, col) to every token of a
    grid x grid patch grid, under axial RoPE and under mixed RoPE whose one head points at `direction` degrees.

    Returns {"axial", "mixed": (grid, grid) score maps, "freqs_axial", "freqs_mixed": (head_dim/2, 2) frequency
    vectors (f_row, f_col), "separability_axial", "separability_mixed", "kind", "query", "text"}.
    """
    query = row * grid + col
    freqs_mixed = mixed_frequencies(head_dim, 1, theta, directions=torch.tensor([np.radians(direction)]))[0]
    freqs_axial = mixed_frequencies(head_dim, 1, theta, directions=torch.zeros(1))[0]
    axial = _score_map(axial_angles(grid, grid, head_dim, theta), query, grid, grid)
    mixed = _score_map(mixed_angles(grid, grid, freqs_mixed), query, grid, grid)
    sep_a, sep_m = _separability(axial), _separability(mixed)
    text = (f"query token (row {row}, column {col}) on a {grid}x{grid} grid; head dim {head_dim}, theta {theta:g}\n"
            f"axial: part of the score map that is not row + column: {sep_a:.3f} (axis-aligned: always 0)\n"
            f"mixed, direction {direction:.0f} degrees: part that is not row + column: {sep_m:.3f}")
    return {"axial": axial, "mixed": mixed, "freqs_axial": freqs_axial.numpy(), "freqs_mixed": freqs_mixed.numpy(),
            "separability_axial": sep_a, "separability_mixed": sep_m, "kind": kind, "query": (row, col),
            "direction": direction, "text": text}


def draw_rope_2d(view: dict, fig: Figure):
    """Score maps of the chosen kinds (the query marked), then both sets of frequency vectors."""
    kinds = ["axial", "mixed"] if view["kind"] == "both" else [view["kind"]]
    axes = fig.subplots(1, len(kinds) + 1)
    for ax, kind in zip(axes, kinds):
        ax.imshow(view[kind], cmap="RdBu_r", vmin=-1, vmax=1)
        ax.plot(view["query"][1], view["query"][0], "k*", markersize=10)
        ax.set_xticks([])
        ax.set_yticks([])
        direction = f" ({view['direction']:.0f} deg)" if kind == "mixed" else ""
        ax.set_title(f"{kind} RoPE: score from the query{direction}")
    ax = axes[-1]
    for kind, colour in (("axial", "tab:gray"), ("mixed", "tab:red")):
        for f_row, f_col in view[f"freqs_{kind}"]:
            ax.annotate("", (f_col, -f_row), (0, 0), arrowprops={"arrowstyle": "->", "color": colour})
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.set_xlabel("column frequency (gray: axial, red: mixed)")
    ax.set_title("frequency vectors, image axes")
    fig.tight_layout()


def rope_2d_explorer(row: int = 7, col: int = 7, direction: float = 45.0, grid: int = 15) -> Explorer:
    """A choice of axial / mixed / both; sliders for the query row and column and the mixed head's direction."""
    controls = {
        "kind": widgets.ToggleButtons(options=["both", "axial", "mixed"], value="both", description="kind"),
        "row": _slider("query row", row, 0, grid - 1),
        "col": _slider("query column", col, 0, grid - 1),
        "direction": widgets.FloatSlider(value=direction, min=0.0, max=180.0, step=5.0, description="direction",
                                         continuous_update=False),
    }
    return Explorer(lambda **values: rope_2d_view(grid=grid, **values), draw_rope_2d, controls, figsize=(12, 3.8))


# ---- lesson 06: joint attention in the MMDiT ------------------------------------------------------------

MMDIT_CAPTIONS = ("a red circle above a blue square", "a yellow square to the left of a purple triangle",
                  "a large cyan circle in the top left", "two small green diamonds")


def guided_trajectory(model, caption: str, steps: int = 10, cfg_scale: float = 2.0, seed: int = 0) -> torch.Tensor:
    """Euler sampling of one caption with CFG from seeded noise: the latent at every step, (steps + 1, 1, C, s, s)."""
    side = model.config["input_size"]
    noise = torch.randn(1, model.in_channels, side, side, generator=torch.Generator().manual_seed(seed))
    return euler_sample(model, noise, Tokenizer(model.max_len).encode([caption]), steps, model.null_condition(),
                        cfg_scale, return_trajectory=True)


@torch.no_grad()
def mmdit_attention_view(model, caption: str = MMDIT_CAPTIONS[0], word: int = 1, step: int = 5, layer: int = 0,
                         steps: int = 10, cfg_scale: float = 2.0, seed: int = 0, vae=None, trajectory=None) -> dict:
    """What the MMDiT attention explorer shows: sample the caption with `steps` Euler steps, stop at `step`, and
    read the joint attention of `layer` (averaged over heads) between the image patches and caption word `word`.
    trajectory: the caption's guided_trajectory with these steps, cfg_scale and seed, if already computed.

    Returns {"words", "word", "image" (H, W, 3): the decoded prediction of the clean image at that step,
    "image_to_word" (h, w): the share of each patch's attention that goes to the word, "word_to_image" (h, w):
    how the word's own attention spreads over the patches, "text_share": the patches' attention on all text,
    "t", "text"}.
    """
    words = Tokenizer(model.max_len).words(caption)
    word = min(word, len(words) - 1)
    ids, mask = Tokenizer(model.max_len).encode([caption])
    if trajectory is None:
        trajectory = guided_trajectory(model, caption, steps, cfg_scale, seed)
    x, null, times = trajectory[step], model.null_condition(), torch.linspace(0, 1, steps + 1)
    t = times[step][None]
    captured = {}

    def keep_first_inputs(module, args, out):  # the conditional pass runs first, then the null caption's
        captured.setdefault("args", args)

    hook = model.blocks[layer].attn.register_forward_hook(keep_first_inputs)
    v = guided_velocity(model, x, t, (ids, mask), null, cfg_scale)
    hook.remove()
    weights = model.blocks[layer].attn.attention_weights(*captured["args"])[0].mean(0)  # (N + M, N + M), mean of heads
    grid = x.shape[-1] // model.patch_size
    n = grid * grid
    column = n + 1 + word  # the begin token sits between the patches and the words
    image_to_word = weights[:n, column].reshape(grid, grid)
    word_to_image = weights[column, :n].reshape(grid, grid)
    text_share = weights[:n, n:].sum(-1).mean().item()
    clean = x + (1 - t) * v  # the prediction of the data latent at this step
    image = (load_vae() if vae is None else vae).decode(clean)[0].permute(1, 2, 0).clamp(-1, 1).add(1).div(2).numpy()
    peak = divmod(int(image_to_word.argmax()), grid)
    text = (f"caption '{caption}', word {word} '{words[word]}', step {step} of {steps} (t = {t.item():.2f}), "
            f"layer {layer}\n"
            f"image patches give {text_share:.1%} of their attention to the caption tokens, "
            f"{image_to_word.mean():.1%} to '{words[word]}' (most: patch row {peak[0]}, column {peak[1]})\n"
            f"'{words[word]}' gives {word_to_image.sum():.1%} of its attention to the image patches")
    return {"words": words, "word": word, "image": image, "image_to_word": image_to_word.numpy(),
            "word_to_image": word_to_image.numpy(), "text_share": text_share, "t": t.item(), "text": text}


def draw_mmdit_attention(view: dict, fig: Figure):
    """(a) the predicted image, (b) patches -> word attention over it, (c) word -> patches attention over it."""
    axes = fig.subplots(1, 3)
    image, side = view["image"], view["image"].shape[0]
    word = view["words"][view["word"]]
    axes[0].imshow(image)
    axes[0].set_title(f"(a) predicted image at t = {view['t']:.2f}")
    for ax, key, title in ((axes[1], "image_to_word", f"(b) patches attend to '{word}'"),
                           (axes[2], "word_to_image", f"(c) '{word}' attends to patches")):
        ax.imshow(image)
        ax.imshow(view[key], cmap="magma", alpha=0.6, extent=(0, side, side, 0), interpolation="nearest")
        ax.set_title(title)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()


def mmdit_attention_explorer(model, caption: str = MMDIT_CAPTIONS[0], steps: int = 10) -> Explorer:
    """A caption (pick one or type one), sliders for the word, the denoising step and the layer."""
    model = model.eval()
    vae = load_vae()
    controls = {
        "caption": widgets.Combobox(options=MMDIT_CAPTIONS, value=caption, description="caption",
                                    ensure_option=False, continuous_update=False),
        "word": _slider("word", 1, 0, model.max_len - 1),
        "step": _slider("step", steps // 2, 0, steps - 1),
        "layer": _slider("layer", 0, 0, len(model.blocks) - 1),
    }

    last, trajectories = {}, {}  # one sampling run per caption: the word, step and layer sliders only read it

    def compute(caption, **values):
        try:
            if caption not in trajectories:
                trajectories[caption] = guided_trajectory(model, caption, steps)
            last["view"] = mmdit_attention_view(model, caption, steps=steps, vae=vae,
                                                trajectory=trajectories[caption], **values)
        except ValueError as error:  # a typed caption with an unknown word: say so, keep the last picture
            if "view" not in last:
                raise
            return {**last["view"], "text": str(error)}
        return last["view"]

    return Explorer(compute, draw_mmdit_attention, controls, figsize=(11, 3.8))
