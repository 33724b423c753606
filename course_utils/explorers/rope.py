"""Lesson 05's explorers: rotary position embeddings (Su et al., 2021 RoFormer; Heo et al., 2024 RoPE-Mixed).

1D: each channel pair turns by position x frequency, so a score depends only on the offset m - n. 2D: axial RoPE
gives score maps of the form row + column; mixed RoPE, with oblique frequency directions, can draw diagonals.
"""

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from ..rope import apply_rope, axial_angles, mixed_angles, mixed_frequencies, rope_angles_1d, rope_frequencies
from .base import Explorer, check_index, choice_slider, float_slider, int_slider

KINDS = ("both", "axial", "mixed")  # the 2D explorer's score maps


def rope_1d_view(position: int = 3, pair: int = 0, theta: float = 10_000.0, dim: int = 16, max_offset: int = 32,
                 seed: int = 0) -> dict:
    """What the 1D RoPE explorer shows: a query at `position` m, its channel pairs as rotated 2D vectors, and
    the score q_m . k_n against the offset m - n for a fixed random q and k (dim,) drawn from `seed`.

    Returns {"vectors" (dim/2, 2): each pair of the all-(1, 0) query after rotation, "angles" (dim/2,),
    "offsets" (2 max_offset + 1,), "scores" (query at m), "scores_at_0" (the same offsets, query at 0),
    "pair_term" (cos(offset * w_pair)), "pair", "position", "wavelength", "gap", "text"}.
    """
    check_index("pair", pair, dim // 2)
    if not isinstance(position, (int, np.integer)) or position < 0:
        raise ValueError(f"position must be a non-negative integer, got {position!r}.")
    check_theta(theta)
    if not isinstance(max_offset, (int, np.integer)) or max_offset < 1:
        raise ValueError(f"max_offset must be a positive integer (offsets run from -max_offset to max_offset), got "
                         f"{max_offset!r}.")
    freqs = rope_frequencies(dim, theta)  # (dim/2,)
    angles = position * freqs  # (dim/2,)
    unit = torch.tensor([1.0, 0.0]).repeat(dim // 2)  # (dim,): every pair points along x before rotation
    vectors = apply_rope(unit[None], angles[None])[0].reshape(-1, 2)  # (dim/2, 2)
    q, k = torch.randn(2, dim, generator=torch.Generator().manual_seed(seed))  # (dim,) each
    offsets = torch.arange(-max_offset, max_offset + 1)

    def score_curve(m):
        q_rot = apply_rope(q[None], rope_angles_1d(torch.tensor([m]), dim, theta))  # (1, dim)
        k_rot = apply_rope(k[None].expand(len(offsets), -1), rope_angles_1d(m - offsets, dim, theta))  # (offsets, dim)
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
        "position": int_slider("position m", position, 0, 64),
        "pair": int_slider("pair", pair, 0, dim // 2 - 1),
        "theta": choice_slider("theta", [10.0, 100.0, 1000.0, 10000.0], 10000.0),
    }
    return Explorer(lambda **values: rope_1d_view(dim=dim, **values), draw_rope_1d, controls, figsize=(12, 3.6))


def score_map(angles: torch.Tensor, query: int, h: int, w: int) -> np.ndarray:
    """Score (h, w) of token `query` against every token of the grid, for q = k = all ones (1 at the query itself).
    angles (h w, d/2): the rotary angles of the grid's tokens."""
    ones = torch.ones(angles.shape[0], 2 * angles.shape[1])  # (N, d)
    rotated = apply_rope(ones, angles)  # (N, d)
    return (rotated @ rotated[query] / ones.shape[1]).reshape(h, w).double().numpy()


def separability(scores: np.ndarray) -> float:
    """Largest part of a score map (h, w) that a sum f(row) + g(column) cannot explain (0 for axial RoPE)."""
    s = scores
    return float(np.abs(s - s.mean(1, keepdims=True) - s.mean(0, keepdims=True) + s.mean()).max())


def check_theta(theta) -> None:
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not (1 < theta < float("inf")):
        raise ValueError(f"theta must be a finite number above 1 (the base of the wavelengths, 10000 in "
                         f"RoFormer), got {theta!r}.")


def rope_2d_view(row: int = 7, col: int = 7, direction: float = 45.0, kind: str = "both", grid: int = 15,
                 head_dim: int = 16, theta: float = 100.0) -> dict:
    """What the 2D RoPE explorer shows: the score map from the query token (row, col) to every token of a
    grid x grid patch grid, under axial RoPE and under mixed RoPE whose one head points at `direction` degrees.

    Returns {"axial", "mixed": (grid, grid) score maps, "freqs_axial", "freqs_mixed": (head_dim/2, 2) frequency
    vectors (f_row, f_col), "separability_axial", "separability_mixed", "kind", "query", "direction", "text"}.
    """
    if not isinstance(grid, (int, np.integer)) or isinstance(grid, bool) or grid < 1:
        raise ValueError(f"grid must be a positive integer (patches per side), got {grid!r}.")
    for name, value in (("row", row), ("col", col)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value < grid:
            raise ValueError(f"{name} must be an integer from 0 to {grid - 1} (the query must lie on the "
                             f"{grid}x{grid} grid), got {value!r}.")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    check_theta(theta)
    query = row * grid + col
    freqs_mixed = mixed_frequencies(head_dim, 1, theta, directions=torch.tensor([np.radians(direction)]))[0]
    freqs_axial = mixed_frequencies(head_dim, 1, theta, directions=torch.zeros(1))[0]
    axial = score_map(axial_angles(grid, grid, head_dim, theta), query, grid, grid)
    mixed = score_map(mixed_angles(grid, grid, freqs_mixed), query, grid, grid)
    sep_a, sep_m = separability(axial), separability(mixed)
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
        "kind": widgets.ToggleButtons(options=list(KINDS), value="both", description="kind"),
        "row": int_slider("query row", row, 0, grid - 1),
        "col": int_slider("query column", col, 0, grid - 1),
        "direction": float_slider("direction", direction, 0.0, 180.0, 5.0),
    }
    return Explorer(lambda **values: rope_2d_view(grid=grid, **values), draw_rope_2d, controls, figsize=(12, 3.8))
