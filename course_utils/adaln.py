"""Adaptive layer norm (Perez et al., 2018 FiLM; Peebles & Xie, 2023 DiT; Flux's `Modulation`).

A conditioning vector c (time + caption) is mapped by one linear layer on SiLU(c) to a per-channel shift, scale and
gate for each residual branch; the normalised tokens are modulated as x * (1 + scale) + shift, and the gate scales
what the branch adds. AdaLN-Zero initialises that layer to zero, so every block starts as the identity.
"""

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import Attention, Mlp


def modulate(x, shift, scale):
    """x (B, N, D) * (1 + scale) + shift, with shift and scale (B, D) broadcast over the tokens (one fused op)."""
    return torch.addcmul(shift[:, None], x, 1 + scale[:, None])


def gated_residual(x, branch, gate):
    """x + gate * branch for the residual stream x and a branch's output (B, N, D), gate (B, D) broadcast over the
    tokens (one fused op); x + branch when gate is None (an ungated branch)."""
    return x + branch if gate is None else torch.addcmul(x, gate[:, None], branch)


class ModulationOut(NamedTuple):
    """The modulation of one residual branch: shift, scale and gate, each (B, D); gate is None when ungated."""

    shift: torch.Tensor
    scale: torch.Tensor
    gate: torch.Tensor = None


class Modulation(nn.Module):
    """c (B, cond_dim) -> one ModulationOut per branch, all from one linear layer on SiLU(c).

    branches: 2 for a transformer block (attention, MLP), 1 for the final layer. gated=False gives plain adaLN
    (shift and scale only). The linear layer's outputs are ordered branch by branch: shift, scale[, gate].
    """

    def __init__(self, dim: int, cond_dim: int, branches: int = 2, gated: bool = True):
        super().__init__()
        self.branches, self.per_branch = branches, 3 if gated else 2
        self.lin = nn.Linear(cond_dim, branches * self.per_branch * dim)

    def forward(self, c) -> tuple:
        chunks = self.lin(F.silu(c)).chunk(self.branches * self.per_branch, dim=-1)  # (B, D) each
        k = self.per_branch
        return tuple(ModulationOut(*chunks[i * k : (i + 1) * k]) for i in range(self.branches))


class AdaLN(nn.Module):
    """LayerNorm without learned affine, then modulation by (shift, scale) from c. (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, cond_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = Modulation(dim, cond_dim, branches=1, gated=False)

    def forward(self, x, c):
        (mod,) = self.modulation(c)
        return modulate(self.norm(x), mod.shift, mod.scale)


class AdaLNZeroBlock(nn.Module):
    """The DiT block with adaptive layer norm: x + gate * attn(modulate(norm(x))), then the same with the MLP.

    gated=True is adaLN-Zero (shift, scale and gate per branch, six vectors); gated=False is plain adaLN (shift and
    scale only, four vectors). x (B, N, D), c (B, cond_dim), rope: optional rotary angles -> (B, N, D).
    """

    def __init__(self, dim: int, heads: int, cond_dim: int, gated: bool = True, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio)
        self.modulation = Modulation(dim, cond_dim, branches=2, gated=gated)

    def forward(self, x, c, rope=None):
        msa, mlp = self.modulation(c)  # ModulationOut of the attention and the MLP branch
        x = gated_residual(x, self.attn(modulate(self.norm1(x), msa.shift, msa.scale), rope=rope), msa.gate)
        return gated_residual(x, self.mlp(modulate(self.norm2(x), mlp.shift, mlp.scale)), mlp.gate)  # (B, N, D)


class FinalLayer(nn.Module):
    """The DiT's output layer: a final layer norm, then one linear map per token. (B, N, D) -> (B, N, out_dim).

    The norm is adaptive (adaLN on c (B, cond_dim)) in a modulated model; with cond_dim=None it is a plain LayerNorm
    and c must be None: the DiT paper's in-context and cross-attention models carry the condition in their tokens.
    """

    def __init__(self, dim: int, out_dim: int, cond_dim: int = None):
        super().__init__()
        self.adaptive = cond_dim is not None
        self.norm = AdaLN(dim, cond_dim) if self.adaptive else nn.LayerNorm(dim, eps=1e-6)
        self.linear = nn.Linear(dim, out_dim)

    def forward(self, x, c=None):
        if self.adaptive != (c is not None):
            raise ValueError(f"this FinalLayer is {'adaptive: pass c' if self.adaptive else 'plain: pass no c'}.")
        return self.linear(self.norm(x, c) if self.adaptive else self.norm(x))
