"""Rotary position embeddings (Su et al., 2021, RoFormer; Heo et al., 2024, RoPE for ViT).

RoPE rotates each interleaved channel pair (x0, x1), (x2, x3), ... of a query or key by an angle proportional
to the token's position, so the score q_m . k_n depends only on the offset m - n. For images, axial RoPE gives
half of the pairs to the row and half to the column; mixed RoPE learns per-head frequency vectors
(f_row, f_col) whose angle row * f_row + col * f_col mixes both axes. Angles are computed from positions,
so any grid size works at test time.
"""

import math

import torch
import torch.nn as nn

POSITIONS = ("absolute", "rope_axial", "rope_mixed", "none")  # how a transformer's tokens learn where they are


def rope_frequencies(dim: int, theta: float = 10_000.0, device=None) -> torch.Tensor:
    """(dim/2,) rotation speeds theta^(-2i/dim) of the channel pairs, fastest first."""
    if dim % 2:
        raise ValueError(f"RoPE rotates channel pairs, so the head dimension must be even, got {dim}.")
    return theta ** (-torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim)


def rope_angles_1d(positions: torch.Tensor, dim: int, theta: float = 10_000.0) -> torch.Tensor:
    """positions (N,) -> angles (N, dim/2) on the positions' device: position times each pair's frequency."""
    return positions.float()[:, None] * rope_frequencies(dim, theta, positions.device)[None]


def rotations(angles: torch.Tensor) -> torch.Tensor:
    """angles (..., N, d/2) -> the unit complex numbers e^(i angle) that turn each pair (same shape, complex)."""
    return torch.polar(torch.ones_like(angles), angles)


def with_unrotated(angles: torch.Tensor, extra: int) -> torch.Tensor:
    """Rotations for N tokens on the grid (angles (..., N, d/2), real or complex), then `extra` tokens without a
    grid position (caption or condition tokens), which turn by angle 0: (..., N + extra, d/2) complex."""
    turns = angles if angles.is_complex() else rotations(angles)
    return torch.cat([turns, turns.new_ones(*turns.shape[:-2], extra, turns.shape[-1])], dim=-2)


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x (..., N, d) by angles (..., N, d/2), broadcast over leading axes.

    Each pair (x0, x1) is the complex number x0 + i x1, turned by multiplying with e^(i angle): one complex
    multiplication (RoFormer's formulation, as in Flux). `angles` may also be given as complex `rotations(angles)`,
    which a model computes once per forward for all its layers.
    """
    if x.shape[-1] != 2 * angles.shape[-1]:
        raise ValueError(f"apply_rope needs angles with half the channels of x: x has {x.shape[-1]} channels, "
                         f"angles have {angles.shape[-1]} pairs.")
    turn = angles if angles.is_complex() else rotations(angles)  # (..., N, d/2)
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())  # (..., N, d/2)
    return torch.view_as_real(pairs * turn).flatten(-2).type_as(x)


def grid_positions(h: int, w: int, device=None) -> torch.Tensor:
    """(h * w, 2) float (row, column) coordinates of an h x w token grid, row-major."""
    rows, cols = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], dim=1).float()


def _check_2d(head_dim: int):
    if head_dim % 4:
        raise ValueError(f"2D RoPE splits the channel pairs between two axes, so the head dimension must be "
                         f"divisible by 4, got {head_dim}.")


def axial_angles(h: int, w: int, head_dim: int, theta: float = 100.0, device=None) -> torch.Tensor:
    """(h * w, head_dim/2) angles of axial 2D RoPE: the first half of the pairs turn with the row, the second
    half with the column, each with the 1D frequencies of head_dim/2 channels."""
    _check_2d(head_dim)
    pos = grid_positions(h, w, device)
    return torch.cat([rope_angles_1d(pos[:, 0], head_dim // 2, theta),
                      rope_angles_1d(pos[:, 1], head_dim // 2, theta)], dim=1)


def mixed_frequencies(head_dim: int, heads: int, theta: float = 10.0, directions: torch.Tensor = None):
    """(heads, head_dim/2, 2) frequency vectors (f_row, f_col) of mixed RoPE.

    Each head gets a direction a (random unless `directions` (heads,) is given, in radians): the first half
    of its pairs point along a, the second half along a + 90 degrees, with magnitudes theta^(-4i/head_dim).
    Direction 0 gives axial RoPE's frequencies.
    """
    _check_2d(head_dim)
    magnitude = rope_frequencies(head_dim // 2, theta)  # (head_dim/4,)
    if directions is None:
        directions = torch.rand(heads) * 2 * math.pi
    a = torch.cat([directions[:, None].expand(-1, len(magnitude)),
                   directions[:, None].expand(-1, len(magnitude)) + math.pi / 2], dim=1)  # (heads, pairs)
    mag = magnitude.repeat(2)[None]  # (1, pairs)
    return torch.stack([mag * torch.cos(a), mag * torch.sin(a)], dim=-1)


def off_axis_degrees(freqs: torch.Tensor) -> torch.Tensor:
    """freqs (..., 2) frequency vectors (f_row, f_col) -> (...) degrees (0 to 45) from the nearest image axis: 0 for
    every pair of axial RoPE, 45 for a diagonal. The axes repeat every 90 degrees, so the angle is folded there."""
    angle = torch.rad2deg(torch.atan2(freqs[..., 1], freqs[..., 0])) % 90
    return torch.minimum(angle, 90 - angle)


def mixed_angles(h: int, w: int, freqs: torch.Tensor) -> torch.Tensor:
    """freqs (..., pairs, 2) -> angles (..., h * w, pairs) = row * f_row + col * f_col."""
    return torch.einsum("nk,...pk->...np", grid_positions(h, w, freqs.device).to(freqs), freqs)


class AxialRoPE(nn.Module):
    """Axial 2D RoPE for an h x w token grid: forward(h, w, device) -> angles (h * w, head_dim/2), shared by all
    heads, made on `device`."""

    def __init__(self, head_dim: int, theta: float = 100.0):
        super().__init__()
        _check_2d(head_dim)
        self.head_dim, self.theta = head_dim, theta

    def forward(self, h: int, w: int, device=None) -> torch.Tensor:
        return axial_angles(h, w, self.head_dim, self.theta, device)


class MixedRoPE(nn.Module):
    """Mixed 2D RoPE with learnable frequencies per layer and head:
    forward(h, w) -> angles (layers, heads, h * w, head_dim/2), on the frequencies' device."""

    def __init__(self, head_dim: int, heads: int, layers: int = 1, theta: float = 10.0):
        super().__init__()
        _check_2d(head_dim)
        self.freqs = nn.Parameter(torch.stack([mixed_frequencies(head_dim, heads, theta) for _ in range(layers)]))

    def forward(self, h: int, w: int, device=None) -> torch.Tensor:
        return mixed_angles(h, w, self.freqs)


def check_position(pos: str) -> None:
    if pos not in POSITIONS:
        raise ValueError(f"pos must be one of {POSITIONS}, got {pos!r}.")


def rotary_for(pos: str, head_dim: int, heads: int, layers: int):
    """The rotary module a transformer with position encoding `pos` (one of POSITIONS) needs: AxialRoPE for
    "rope_axial", a per-layer MixedRoPE for "rope_mixed", None otherwise."""
    check_position(pos)
    if pos == "rope_axial":
        return AxialRoPE(head_dim)
    if pos == "rope_mixed":
        return MixedRoPE(head_dim, heads, layers)
    return None


def layer_angles(rope, h: int, w: int, layers: int, device=None) -> list:
    """One rotation table per layer on an h x w grid, on `device`, as complex `rotations` (computed once, used by
    every attention of the forward pass): (h * w, head_dim/2) shared (axial), (heads, h * w, head_dim/2) per layer
    (mixed), or None for every layer without RoPE."""
    if rope is None:
        return [None] * layers
    turns = rotations(rope(h, w, device))
    return list(turns) if isinstance(rope, MixedRoPE) else [turns] * layers
