"""Multi-head attention on `torch.nn.functional.scaled_dot_product_attention` (Vaswani et al., 2017).

Every token (B, N, D) is projected to queries, keys and values, split into heads, and mixed by
softmax(q k^T / sqrt(d)) v. `context` switches to cross-attention (keys and values from other tokens).
"""

import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange


class Attention(nn.Module):
    """Multi-head self-attention (or cross-attention with `context`): (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, heads: int, context_dim: int = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}.")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim or dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, context=None, context_mask=None):
        """x (B, N, D); context (B, M, Dc) and its mask (B, M) (True = attend) for cross-attention."""
        source = x if context is None else context
        q = rearrange(self.q(x), "b n (h d) -> b h n d", h=self.heads)
        k, v = rearrange(self.kv(source), "b m (two h d) -> two b h m d", two=2, h=self.heads)
        mask = None if context_mask is None else context_mask[:, None, None, :]  # (B, 1, 1, M)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, N, d)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))
