"""Adaptive layer norm (Perez et al., 2018 FiLM; Peebles & Xie, 2023 DiT).

A conditioning vector c (time + caption) is mapped by an MLP to per-channel shift, scale and gate; the
normalised tokens are modulated as x * (1 + scale) + shift, and the gate scales what a residual branch adds.
AdaLN-Zero initialises that MLP to zero, so every block starts as the identity.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import Attention, Mlp


def modulate(x, shift, scale):
    """x (B, N, D) * (1 + scale) + shift, with shift and scale (B, D) broadcast over the tokens."""
    return x * (1 + scale[:, None]) + shift[:, None]


class AdaLN(nn.Module):
    """LayerNorm without learned affine, then modulation by (shift, scale) = MLP(c). (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, cond_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim))

    def forward(self, x, c):
        shift, scale = self.modulation(c).chunk(2, dim=-1)  # (B, D) each
        return modulate(self.norm(x), shift, scale)


class AdaLNBlock(nn.Module):
    """DiT block with adaptive layer norm. gated=True is adaLN-Zero's block (shift, scale and gate per
    branch, six vectors); gated=False is plain adaLN (shift and scale only, four vectors)."""

    def __init__(self, dim: int, heads: int, cond_dim: int, gated: bool = True, mlp_ratio: float = 4.0):
        super().__init__()
        self.gated = gated
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio)
        self.modulation = nn.Linear(cond_dim, (6 if gated else 4) * dim)

    def modulation_params(self, c) -> dict:
        """c (B, cond_dim) -> {"shift_msa", "scale_msa", "gate_msa", "shift_mlp", "scale_mlp", "gate_mlp"}, each (B, D)
        (gates are 1 when the block is not gated)."""
        chunks = self.modulation(F.silu(c)).chunk(6 if self.gated else 4, dim=-1)
        if self.gated:
            names = ("shift_msa", "scale_msa", "gate_msa", "shift_mlp", "scale_mlp", "gate_mlp")
            return dict(zip(names, chunks))
        one = torch.ones_like(chunks[0])
        return dict(zip(("shift_msa", "scale_msa", "shift_mlp", "scale_mlp"), chunks), gate_msa=one, gate_mlp=one)

    def forward(self, x, c, rope=None):
        """x (B, N, D), c (B, cond_dim), rope: optional rotary angles for the attention -> (B, N, D)."""
        m = self.modulation_params(c)
        x = x + m["gate_msa"][:, None] * self.attn(modulate(self.norm1(x), m["shift_msa"], m["scale_msa"]), rope=rope)
        return x + m["gate_mlp"][:, None] * self.mlp(modulate(self.norm2(x), m["shift_mlp"], m["scale_mlp"]))
