"""The baselines of the SD3 paper's architecture study (Esser et al., 2024), built from the MMDiT so that each differs
from it in one thing.

All three share the MMDiT's text encoder, the adaLN-Zero modulation of every block by time + pooled caption, 2D RoPE
on the image tokens, qk-norm, the final layer, width and depth (as the paper's baselines shared its text encoders
and modulation). What differs is how image and text meet in a block:

- `MMDiT` (lesson 06): one joint attention over [image; text]; each modality has its own weights, and both streams
  are updated, so text reads the image and the image reads the text.
- `InContextDiT` (the paper's "DiT"): the same block with the text weights tied to the image weights: one transformer
  over the concatenated sequence. Text still reads the image; what is gone is a separate set of weights per modality.
- `CrossDiT` (the paper's "CrossDiT", as PixArt-alpha): image tokens self-attend, then cross-attend to the text
  tokens, which no block updates: text never reads the image.

Their parameters and Gflops differ (the tied model is the smallest): compare them as columns.
"""

from dataclasses import replace

import torch.nn as nn

from .adaln import Modulation, gated_residual, modulate
from .attention import Attention, Mlp, block_macs
from .mmdit import MMDIT_SMALL, MMDiT, MMDiTBlock


class SharedBlock(MMDiTBlock):
    """The MMDiT block with its text stream tied to its image stream (modulation, qkv, qk-norm, output projection,
    MLP): exactly a DiT block with adaLN-Zero over the concatenated [image; text] sequence."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qk_norm: bool = True):
        super().__init__(dim, heads, mlp_ratio, qk_norm)
        self.modulation_c, self.mlp_c = self.modulation_x, self.mlp_x
        attn = self.attn
        attn.qkv_c, attn.proj_c, attn.q_norm_c, attn.k_norm_c = attn.qkv_x, attn.proj_x, attn.q_norm_x, attn.k_norm_x


class CrossDiTBlock(nn.Module):
    """adaLN-Zero self-attention over the image tokens, cross-attention from them to the text tokens, an adaLN-Zero
    MLP. x (B, N, D), c (B, M, D) text (returned unchanged), y (B, D), mask (B, M) -> (B, N, D), (B, M, D).

    The cross-attention's output projection starts at zero, so the block starts as the identity like the others.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qk_norm: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads, qk_norm=qk_norm)
        self.norm_cross = nn.LayerNorm(dim, eps=1e-6)
        self.cross = Attention(dim, heads, qk_norm=qk_norm)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, mlp_ratio)
        self.modulation_x = Modulation(dim, dim)
        nn.init.zeros_(self.cross.proj.weight)
        nn.init.zeros_(self.cross.proj.bias)

    def forward(self, x, c, y, mask, rope=None):
        msa, mlp = self.modulation_x(y)
        x = gated_residual(x, self.attn(modulate(self.norm1(x), msa.shift, msa.scale), rope=rope), msa.gate)
        x = x + self.cross(self.norm_cross(x), c, mask)  # queries: patches; keys, values: the text tokens
        x = gated_residual(x, self.mlp(modulate(self.norm2(x), mlp.shift, mlp.scale)), mlp.gate)
        return x, c


class InContextDiT(MMDiT):
    """SD3's "DiT" baseline: one set of weights over [image; text] (in-context conditioning, adaLN-Zero).
    Tied weights do the MMDiT's arithmetic, so `gflops` is the MMDiT's."""

    Block = SharedBlock


class CrossDiT(MMDiT):
    """SD3's "CrossDiT" baseline: image self-attention, then cross-attention to fixed text tokens (adaLN-Zero)."""

    Block = CrossDiTBlock

    def gflops(self) -> float:
        """Multiply-accumulates per image of the blocks, in billions: a transformer block on the N image tokens with
        a cross-attention layer to the M = 1 + L text tokens, and one modulation (6 D^2) per block."""
        cfg = self.config
        n, m, d = (cfg.input_size // cfg.patch_size) ** 2, 1 + cfg.max_len, cfg.dim
        return len(self.blocks) * (block_macs(n, d, cfg.mlp_ratio, context=m) + 6 * d * d) / 1e9


def in_context_small(**overrides) -> InContextDiT:
    """The in-context baseline at the shipped MMDiT's size (width 128, depth 4, 2-layer text encoder, axial RoPE)."""
    return InContextDiT(replace(MMDIT_SMALL, **overrides))


def cross_small(**overrides) -> CrossDiT:
    """The cross-attention baseline at the shipped MMDiT's size."""
    return CrossDiT(replace(MMDIT_SMALL, **overrides))
