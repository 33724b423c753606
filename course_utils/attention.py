"""Multi-head attention on `torch.nn.functional.scaled_dot_product_attention` (Vaswani et al., 2017).

Every token (B, N, D) is projected to queries, keys and values, split into heads, and mixed by
softmax(q k^T / sqrt(d)) v. `context` switches to cross-attention (keys and values from other tokens);
`rope` angles rotate the queries and keys of self-attention (lesson 05).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .rope import apply_rope


def check_heads(dim: int, heads: int) -> None:
    """Multi-head attention splits the width into equal heads: dim must be a multiple of heads."""
    if heads < 1 or dim % heads:
        raise ValueError(f"dim {dim} must be divisible by heads {heads}.")


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain (Zhang & Sennrich, 2019): (..., d) -> (..., d). As qk-norm it
    keeps attention logits bounded (SD3)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return F.rms_norm(x, x.shape[-1:], self.weight, self.eps)


class Attention(nn.Module):
    """Multi-head self-attention (or cross-attention with `context`): (B, N, D) -> (B, N, D).

    qk_norm: RMS-normalise queries and keys per head (learned gains), as SD3 does; off by default.
    """

    def __init__(self, dim: int, heads: int, context_dim: int = None, qk_norm: bool = False):
        super().__init__()
        check_heads(dim, heads)
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        norm = (lambda: RMSNorm(dim // heads)) if qk_norm else nn.Identity
        self.q_norm, self.k_norm = norm(), norm()

    def forward(self, x, context=None, context_mask=None, rope=None):
        """x (B, N, D); context (B, M, Dc) for cross-attention; context_mask (B, M) or (B, N) without context:
        which keys may be attended (True); rope: rotary angles (N, d/2) or (heads, N, d/2) for self-attention,
        d = D / heads."""
        source = x if context is None else context
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.heads)
        k, v = rearrange(self.kv(source), "b m (two h d) -> two b h m d", two=2, h=self.heads)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            if context is not None:
                raise ValueError("rotary angles apply to self-attention; cross-attention keys have no grid position.")
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        mask = None if context_mask is None else context_mask[:, None, None, :]  # (B, 1, 1, M)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, N, d)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class Mlp(nn.Module):
    """Two linear layers with a GELU between: (B, N, D) -> (B, N, D), hidden width mlp_ratio * D."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class ViTBlock(nn.Module):
    """The pre-norm transformer block of ViT: x + attn(norm(x)), then x + mlp(norm(x)). (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x, rope=None, mask=None):
        """x (B, N, D); rope: optional rotary angles; mask (B, N): tokens that may be attended to."""
        x = x + self.attn(self.norm1(x), context_mask=mask, rope=rope)  # every token attends to every token
        return x + self.mlp(self.norm2(x))  # each token on its own


def block_macs(tokens: int, dim: int, mlp_ratio: float = 4.0, context: int = 0) -> int:
    """Multiply-accumulates of one transformer block on one sample (what the DiT paper calls flops).

    q, k, v and output projections 4 N D^2; scores and weighted sum 2 N^2 D; MLP 2 r N D^2.
    With `context` tokens, a cross-attention layer adds 2 N D^2 + 2 M D^2 + 2 N M D.
    """
    n, d = tokens, dim
    macs = 4 * n * d * d + 2 * n * n * d + int(2 * mlp_ratio * n * d * d)
    if context:
        macs += 2 * n * d * d + 2 * context * d * d + 2 * n * context * d
    return macs
