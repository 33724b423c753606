"""The multi-modal Diffusion Transformer (Esser et al., 2024, Stable Diffusion 3; Flux.1).

Image patches and caption tokens form one sequence in every attention layer, so text and image read each other in
both directions; each modality keeps its own weights (adaLN-Zero modulation, qkv and output projections, MLP).
The caption comes from a small text encoder trained with the denoiser; 2D RoPE rotates the image tokens only.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .adaln import AdaLN, modulate
from .attention import Mlp, RMSNorm, ViTBlock, block_macs
from .data import Tokenizer
from .embeddings import TimestepEmbedder, null_caption
from .patchify import PatchEmbed, patch_tokens, unpatchify
from .rope import apply_rope, layer_angles, rotary_for

POSITIONS = ("rope_axial", "rope_mixed", "absolute")


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

    x (B, N, D) image, c (B, M, D) text, mask (B, M) text tokens that may be attended to, rope: rotary angles for
    the image tokens -> (B, N, D), (B, M, D).
    """

    def __init__(self, dim: int, heads: int, qk_norm: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}.")
        self.heads, head_dim = heads, dim // heads
        self.qkv_x, self.qkv_c = nn.Linear(dim, 3 * dim), nn.Linear(dim, 3 * dim)
        norm = (lambda: RMSNorm(head_dim)) if qk_norm else nn.Identity
        self.q_norm_x, self.k_norm_x, self.q_norm_c, self.k_norm_c = norm(), norm(), norm(), norm()
        self.proj_x, self.proj_c = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def qkv(self, x, c, mask, rope=None) -> tuple:
        """Queries, keys and values of the joint sequence (B, h, N + M, d) each, and its key mask (B, N + M)."""
        split = "b n (three h d) -> three b h n d"
        qx, kx, vx = rearrange(self.qkv_x(x), split, three=3, h=self.heads)  # (B, h, N, d) each
        qc, kc, vc = rearrange(self.qkv_c(c), split, three=3, h=self.heads)  # (B, h, M, d) each
        qx, kx, qc, kc = self.q_norm_x(qx), self.k_norm_x(kx), self.q_norm_c(qc), self.k_norm_c(kc)
        if rope is not None:  # positions on the patch grid; text tokens are not rotated
            qx, kx = apply_rope(qx, rope), apply_rope(kx, rope)
        keys = torch.cat([mask.new_ones(x.shape[0], x.shape[1]), mask], dim=1)  # (B, N + M)
        return torch.cat([qx, qc], 2), torch.cat([kx, kc], 2), torch.cat([vx, vc], 2), keys

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
        self.modulation_x, self.modulation_c = nn.Linear(dim, 6 * dim), nn.Linear(dim, 6 * dim)

    def forward(self, x, c, y, mask, rope=None):
        y = F.silu(y)
        shift_msa_x, scale_msa_x, gate_msa_x, shift_mlp_x, scale_mlp_x, gate_mlp_x = self.modulation_x(y).chunk(6, -1)
        shift_msa_c, scale_msa_c, gate_msa_c, shift_mlp_c, scale_mlp_c, gate_mlp_c = self.modulation_c(y).chunk(6, -1)
        attn_x, attn_c = self.attn(modulate(self.norm1_x(x), shift_msa_x, scale_msa_x),
                                   modulate(self.norm1_c(c), shift_msa_c, scale_msa_c), mask, rope)
        x = x + gate_msa_x[:, None] * attn_x  # (B, N, D)
        c = c + gate_msa_c[:, None] * attn_c  # (B, M, D)
        x = x + gate_mlp_x[:, None] * self.mlp_x(modulate(self.norm2_x(x), shift_mlp_x, scale_mlp_x))
        c = c + gate_mlp_c[:, None] * self.mlp_c(modulate(self.norm2_c(c), shift_mlp_c, scale_mlp_c))
        return x, c


class MMDiT(nn.Module):
    """A text-to-image MMDiT on the course contract model(x_t, t, (ids, mask)) -> v.

    The text encoder's tokens join the image tokens in every block; time + pooled caption drive the adaLN-Zero
    modulation of both streams. pos: 2D RoPE ("rope_axial", "rope_mixed") or "absolute" on the image tokens.
    input_size is the training latent size (for gflops); any size divisible by patch_size runs.
    """

    def __init__(self, input_size: int = 8, patch_size: int = 2, in_channels: int = 4, dim: int = 128,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0, text_depth: int = 2, max_len: int = 12,
                 vocab_size: int = None, qk_norm: bool = True, pos: str = "rope_axial"):
        super().__init__()
        if pos not in POSITIONS:
            raise ValueError(f"pos must be one of {POSITIONS}, got {pos!r}.")
        self.config = {"input_size": input_size, "patch_size": patch_size, "in_channels": in_channels, "dim": dim,
                       "depth": depth, "heads": heads, "mlp_ratio": mlp_ratio, "text_depth": text_depth,
                       "max_len": max_len, "vocab_size": vocab_size, "qk_norm": qk_norm, "pos": pos}
        self.patch_size, self.in_channels, self.max_len, self.pos = patch_size, in_channels, max_len, pos
        self.x_embedder = PatchEmbed(patch_size, in_channels, dim)
        self.t_embedder = TimestepEmbedder(dim)
        self.text_encoder = TextEncoder(vocab_size or len(Tokenizer()), max_len, dim, text_depth, heads)
        self.pooled_embedder = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.rope = rotary_for(pos, dim // heads, heads, depth)
        self.blocks = nn.ModuleList([MMDiTBlock(dim, heads, mlp_ratio, qk_norm) for _ in range(depth)])
        self.final_norm = AdaLN(dim, dim)
        self.final_linear = nn.Linear(dim, patch_size * patch_size * in_channels)
        self.initialize_weights()

    def initialize_weights(self):
        # Zero-out adaLN modulation layers of both streams: every block starts as the identity.
        for block in self.blocks:
            for modulation in (block.modulation_x, block.modulation_c):
                nn.init.zeros_(modulation.weight)
                nn.init.zeros_(modulation.bias)
        # Zero-out the output layer: the untrained MMDiT predicts v = 0.
        nn.init.zeros_(self.final_norm.modulation[-1].weight)
        nn.init.zeros_(self.final_norm.modulation[-1].bias)
        nn.init.zeros_(self.final_linear.weight)
        nn.init.zeros_(self.final_linear.bias)

    def null_condition(self) -> tuple:
        return null_caption(self.max_len)

    def encode(self, x, t, cond) -> tuple:
        """Everything the blocks take: image tokens (B, N, D), text tokens (B, 1 + L, D), their mask, y (B, D),
        and one rotary angle table per block (None without RoPE)."""
        tokens, h, w = patch_tokens(x, self.x_embedder, self.pos == "absolute", "MMDiT")
        text, mask, pooled = self.text_encoder(*cond)  # (B, 1 + L, D), (B, 1 + L), (B, D)
        y = self.t_embedder(t) + self.pooled_embedder(pooled)  # (B, D)
        return tokens, text, mask, y, layer_angles(self.rope, h, w, len(self.blocks))

    def forward(self, x, t, cond):
        """x (B, C, H, W), t (B,), cond = (ids, mask) each (B, L) -> v (B, C, H, W)."""
        tokens, text, mask, y, angles = self.encode(x, t, cond)
        for block, rope in zip(self.blocks, angles):
            tokens, text = block(tokens, text, y, mask, rope)  # (B, N, D), (B, 1 + L, D)
        out = self.final_linear(self.final_norm(tokens, y))  # (B, N, p*p*C)
        c, h, w = x.shape[1:]
        return unpatchify(out, self.patch_size, h // self.patch_size, w // self.patch_size, c)  # (B, C, H, W)

    def gflops(self) -> float:
        """Multiply-accumulates per image of the joint blocks, in billions: each stream pays its own projections
        and MLP; the attention scores run over all N + M tokens."""
        n, m = (self.config["input_size"] // self.patch_size) ** 2, 1 + self.max_len
        d, ratio = self.config["dim"], self.config["mlp_ratio"]
        joint = n + m
        per_block = (block_macs(n, d, ratio) - 2 * n * n * d) + (block_macs(m, d, ratio) - 2 * m * m * d)
        per_block += 2 * joint * joint * d + 2 * 6 * d * d
        return len(self.blocks) * per_block / 1e9


def mmdit_small(**overrides) -> MMDiT:
    """The shipped lesson 06 MMDiT: width 128, depth 4, 4 heads, patch 2, a 2-layer text encoder, axial RoPE."""
    return MMDiT(**{"dim": 128, "depth": 4, "heads": 4, "patch_size": 2, "text_depth": 2, **overrides})
