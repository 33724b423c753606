"""The multi-modal Diffusion Transformer (Esser et al., 2024, Stable Diffusion 3; Flux.1).

Image patches and caption tokens form one sequence in every attention layer, so text and image read each other in
both directions; each modality keeps its own weights (adaLN-Zero modulation, qkv and output projections, MLP).
The caption comes from a small text encoder trained with the denoiser; 2D RoPE rotates the image tokens only.
"""

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .adaln import FinalLayer, Modulation, gated_residual, modulate
from .attention import Mlp, RMSNorm, ViTBlock, block_macs, check_heads
from .embeddings import VOCAB_SIZE, CaptionDenoiser, TimestepEmbedder
from .patchify import PatchEmbed, patch_tokens, unpatchify
from .rope import apply_rope, check_position, layer_angles, rotary_for, with_unrotated


@dataclass(frozen=True)
class MMDiTConfig:
    """Everything that builds an MMDiT; a checkpoint stores it, so nothing is resolved at load time.

    input_size is the training latent side (for gflops and sampling); any size divisible by patch_size runs.
    """

    input_size: int = 8
    patch_size: int = 2
    in_channels: int = 4
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    text_depth: int = 2
    max_len: int = 12
    vocab_size: int = VOCAB_SIZE
    qk_norm: bool = True
    pos: str = "rope_axial"

    def __post_init__(self):
        check_position(self.pos)
        check_heads(self.dim, self.heads)


MMDIT_SMALL = MMDiTConfig(dim=128, depth=4, heads=4, patch_size=2, text_depth=2)  # the shipped lesson 06 MMDiT


class TextEncoder(nn.Module):
    """Token ids and mask (B, L) -> token embeddings (B, 1 + L, D), their mask (B, 1 + L), pooled (B, D).

    A learned begin token leads every caption, so even the null caption (all padding) has one token to attend to
    and to pool. Padding is masked out of every attention and out of the pooled mean.
    """

    def __init__(self, vocab_size: int, max_len: int, dim: int, depth: int = 2, heads: int = 4):
        super().__init__()
        self.word = nn.Embedding(vocab_size, dim, padding_idx=0)
        self.begin = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.zeros(1, 1 + max_len, dim))
        self.blocks = nn.ModuleList([ViTBlock(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        nn.init.normal_(self.word.weight, std=0.02)
        nn.init.normal_(self.begin, std=0.02)
        nn.init.normal_(self.position, std=0.02)

    def forward(self, ids, mask):
        b, length = ids.shape
        x = torch.cat([self.begin.expand(b, -1, -1), self.word(ids)], dim=1) + self.position[:, : 1 + length]
        mask = torch.cat([mask.new_ones(b, 1), mask], dim=1)  # (B, 1 + L)
        for block in self.blocks:
            x = block(x, mask=mask)  # (B, 1 + L, D)
        x = self.norm(x)
        weights = mask[..., None].float()
        pooled = (x * weights).sum(1) / weights.sum(1)  # (B, D): mean over the begin token and the words
        return x, mask, pooled


class JointAttention(nn.Module):
    """One attention over [image tokens; text tokens], with separate qkv and output projections per modality.

    x (B, N, D) image, c (B, M, D) text, mask (B, M) text tokens that may be attended to, rope: rotary angles (or
    rotations) for the image tokens -> (B, N, D), (B, M, D). The qk-norm (RMS, as in SD3) has its own gains per
    modality; queries and keys of both modalities are normalised and rotated together, in one pass each.
    """

    def __init__(self, dim: int, heads: int, qk_norm: bool = True):
        super().__init__()
        check_heads(dim, heads)
        self.heads, head_dim = heads, dim // heads
        self.qkv_x, self.qkv_c = nn.Linear(dim, 3 * dim), nn.Linear(dim, 3 * dim)
        norm = (lambda: RMSNorm(head_dim)) if qk_norm else nn.Identity
        self.q_norm_x, self.k_norm_x, self.q_norm_c, self.k_norm_c = norm(), norm(), norm(), norm()
        self.proj_x, self.proj_c = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def qk_gains(self, n: int, m: int) -> torch.Tensor:
        """The qk-norm gains along the joint sequence: (2, 1, 1, n + m, d), queries first, image tokens first."""
        image = torch.stack([self.q_norm_x.weight, self.k_norm_x.weight])[:, None, None, None]  # (2, 1, 1, 1, d)
        text = torch.stack([self.q_norm_c.weight, self.k_norm_c.weight])[:, None, None, None]
        return torch.cat([image.expand(-1, -1, -1, n, -1), text.expand(-1, -1, -1, m, -1)], dim=3)

    def qkv(self, x, c, mask, rope=None) -> tuple:
        """Queries, keys and values of the joint sequence (B, h, N + M, d) each, and its key mask (B, N + M)."""
        n, m = x.shape[1], c.shape[1]
        joint = torch.cat([self.qkv_x(x), self.qkv_c(c)], dim=1)  # (B, N + M, 3D)
        qk, v = joint.split([2 * joint.shape[-1] // 3, joint.shape[-1] // 3], dim=-1)  # (its backward is a cat)
        qk = rearrange(qk, "b n (two h d) -> two b h n d", two=2, h=self.heads)  # (2, B, h, N + M, d)
        v = rearrange(v, "b n (h d) -> b h n d", h=self.heads)  # (B, h, N + M, d)
        if isinstance(self.q_norm_x, RMSNorm):
            qk = F.rms_norm(qk, qk.shape[-1:], eps=self.q_norm_x.eps) * self.qk_gains(n, m)
        if rope is not None:  # positions on the patch grid; text tokens are not rotated (angle 0)
            qk = apply_rope(qk, with_unrotated(rope, m))
        keys = torch.cat([mask.new_ones(x.shape[0], n), mask], dim=1)  # (B, N + M)
        q, k = qk.unbind(0)  # (B, h, N + M, d) each
        return q, k, v, keys

    def forward(self, x, c, mask, rope=None):
        q, k, v, keys = self.qkv(x, c, mask, rope)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=keys[:, None, None, :])  # (B, h, N + M, d)
        out_x, out_c = rearrange(out, "b h n d -> b n (h d)").split([x.shape[1], c.shape[1]], dim=1)
        return self.proj_x(out_x), self.proj_c(out_c)

    def attention_weights(self, x, c, mask, rope=None) -> torch.Tensor:
        """The softmax weights SDPA uses, written out: (B, h, N + M, N + M), rows are queries (for the explorer)."""
        q, k, _, keys = self.qkv(x, c, mask, rope)
        scores = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
        return scores.masked_fill(~keys[:, None, None, :], float("-inf")).softmax(-1)


class MMDiTBlock(nn.Module):
    """Two adaLN-Zero streams (image and text) that meet in one joint attention.

    x (B, N, D), c (B, M, D), y (B, D) = time + pooled caption, mask (B, M) -> (B, N, D), (B, M, D).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qk_norm: bool = True):
        super().__init__()
        self.norm1_x = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm1_c = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = JointAttention(dim, heads, qk_norm)
        self.norm2_x = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm2_c = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp_x, self.mlp_c = Mlp(dim, mlp_ratio), Mlp(dim, mlp_ratio)
        self.modulation_x, self.modulation_c = Modulation(dim, dim), Modulation(dim, dim)

    def attention_inputs(self, x, c, y) -> tuple:
        """The modulated, normalised streams that enter the joint attention, (B, N, D) and (B, M, D), and the
        modulations ((attention, MLP) ModulationOut pairs) of the image and the text stream."""
        mod_x, mod_c = self.modulation_x(y), self.modulation_c(y)
        x_in = modulate(self.norm1_x(x), mod_x[0].shift, mod_x[0].scale)
        c_in = modulate(self.norm1_c(c), mod_c[0].shift, mod_c[0].scale)
        return x_in, c_in, mod_x, mod_c

    def forward(self, x, c, y, mask, rope=None):
        x_in, c_in, (msa_x, mlp_x), (msa_c, mlp_c) = self.attention_inputs(x, c, y)
        attn_x, attn_c = self.attn(x_in, c_in, mask, rope)
        x = gated_residual(x, attn_x, msa_x.gate)  # (B, N, D)
        c = gated_residual(c, attn_c, msa_c.gate)  # (B, M, D)
        x = gated_residual(x, self.mlp_x(modulate(self.norm2_x(x), mlp_x.shift, mlp_x.scale)), mlp_x.gate)
        c = gated_residual(c, self.mlp_c(modulate(self.norm2_c(c), mlp_c.shift, mlp_c.scale)), mlp_c.gate)
        return x, c


class JointAttentionMaps(NamedTuple):
    """The joint attention of one MMDiT layer over [image patches; begin token; caption words].

    weights (B, heads, N + M, N + M), rows are queries; grid (h, w) of the N = h * w patches; M = 1 + L.
    """

    weights: torch.Tensor
    grid: tuple

    @property
    def n_image(self) -> int:
        return self.grid[0] * self.grid[1]

    def word_column(self, word: int) -> int:
        """The sequence position of caption word `word` (the begin token sits between the patches and the words)."""
        return self.n_image + 1 + word

    def patches_to_word(self, word: int) -> torch.Tensor:
        """(B, h, w): the share of each patch's attention (mean over heads) that goes to the word."""
        return self.weights.mean(1)[:, : self.n_image, self.word_column(word)].unflatten(1, self.grid)

    def word_to_patches(self, word: int) -> torch.Tensor:
        """(B, h, w): how the word's own attention (mean over heads) spreads over the patches."""
        return self.weights.mean(1)[:, self.word_column(word), : self.n_image].unflatten(1, self.grid)

    def text_share(self) -> torch.Tensor:
        """(B,): the mean share of their attention that the patches give to all text tokens."""
        return self.weights.mean(1)[:, : self.n_image, self.n_image :].sum(-1).mean(-1)


class MMDiT(CaptionDenoiser):
    """A text-to-image MMDiT on the course contract model(x_t, t, (ids, mask)) -> v.

    The text encoder's tokens join the image tokens in every block; time + pooled caption drive the adaLN-Zero
    modulation of both streams. pos: 2D RoPE ("rope_axial", "rope_mixed"), "absolute" or "none" on the image tokens.
    """

    Config = MMDiTConfig
    Block = MMDiTBlock  # block(dim, heads, mlp_ratio, qk_norm); the SD3 baselines swap in their own

    def __init__(self, config: MMDiTConfig = MMDIT_SMALL):
        super().__init__()
        self.config = config
        dim, heads, depth = config.dim, config.heads, config.depth
        self.x_embedder = PatchEmbed(config.patch_size, config.in_channels, dim)
        self.t_embedder = TimestepEmbedder(dim)
        self.text_encoder = TextEncoder(config.vocab_size, config.max_len, dim, config.text_depth, heads)
        self.pooled_embedder = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.rope = rotary_for(config.pos, dim // heads, heads, depth)
        self.blocks = nn.ModuleList([self.Block(dim, heads, config.mlp_ratio, config.qk_norm) for _ in range(depth)])
        self.final_layer = FinalLayer(dim, config.patch_size**2 * config.in_channels, dim)
        self.initialize_weights()

    def initialize_weights(self):
        # Zero-out adaLN modulation layers of both streams: every block starts as the identity.
        for modulation in (m for m in self.blocks.modules() if isinstance(m, Modulation)):
            nn.init.zeros_(modulation.lin.weight)
            nn.init.zeros_(modulation.lin.bias)
        # Zero-out the output layer: the untrained MMDiT predicts v = 0.
        nn.init.zeros_(self.final_layer.norm.modulation.lin.weight)
        nn.init.zeros_(self.final_layer.norm.modulation.lin.bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def encode(self, x, t, cond) -> tuple:
        """Everything the blocks take: image tokens (B, N, D), text tokens (B, 1 + L, D), their mask, y (B, D),
        one rotary angle table per block (None without RoPE), and the patch grid (h, w)."""
        tokens, h, w = patch_tokens(x, self.x_embedder, self.config.pos == "absolute", "MMDiT")
        text, mask, pooled = self.text_encoder(*cond)  # (B, 1 + L, D), (B, 1 + L), (B, D)
        y = self.t_embedder(t) + self.pooled_embedder(pooled)  # (B, D)
        return tokens, text, mask, y, layer_angles(self.rope, h, w, len(self.blocks), x.device), (h, w)

    def forward(self, x, t, cond):
        """x (B, C, H, W), t (B,), cond = (ids, mask) each (B, L) -> v (B, C, H, W)."""
        self.check_inputs(x, t, cond)
        tokens, text, mask, y, angles, (h, w) = self.encode(x, t, cond)
        for block, rope in zip(self.blocks, angles):
            tokens, text = block(tokens, text, y, mask, rope)  # (B, N, D), (B, 1 + L, D)
        out = self.final_layer(tokens, y)  # (B, N, p*p*C)
        return unpatchify(out, self.config.patch_size, h, w, x.shape[1])  # (B, C, H, W)

    @torch.no_grad()
    def attention_maps(self, x, t, cond, layer: int) -> JointAttentionMaps:
        """The joint attention of block `layer` when the model is called as model(x, t, cond)."""
        if not 0 <= layer < len(self.blocks):
            raise ValueError(f"layer must be in 0..{len(self.blocks) - 1}, got {layer}.")
        tokens, text, mask, y, angles, grid = self.encode(x, t, cond)
        for block, rope in zip(self.blocks[:layer], angles):
            tokens, text = block(tokens, text, y, mask, rope)
        x_in, c_in, _, _ = self.blocks[layer].attention_inputs(tokens, text, y)
        return JointAttentionMaps(self.blocks[layer].attn.attention_weights(x_in, c_in, mask, angles[layer]), grid)

    def gflops(self) -> float:
        """Multiply-accumulates per image of the joint blocks, in billions: each stream pays its own projections
        and MLP; the attention scores run over all N + M tokens."""
        cfg = self.config
        n, m = (cfg.input_size // cfg.patch_size) ** 2, 1 + cfg.max_len
        d, ratio = cfg.dim, cfg.mlp_ratio
        joint = n + m
        per_block = (block_macs(n, d, ratio) - 2 * n * n * d) + (block_macs(m, d, ratio) - 2 * m * m * d)
        per_block += 2 * joint * joint * d + 2 * 6 * d * d
        return len(self.blocks) * per_block / 1e9


def mmdit_small(**overrides) -> MMDiT:
    """The shipped lesson 06 MMDiT: width 128, depth 4, 4 heads, patch 2, a 2-layer text encoder, axial RoPE."""
    return MMDiT(replace(MMDIT_SMALL, **overrides))
