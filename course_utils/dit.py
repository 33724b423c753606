"""The Diffusion Transformer (Peebles & Xie, 2023) on latents, with the paper's four ways to inject
the condition: in-context tokens, cross-attention, adaLN, and adaLN-Zero.

Patchify -> tokens + position -> blocks conditioned on c = time + caption -> final adaptive layer -> unpatchify.
Position enters as an absolute sine-cosine table added to the tokens, or as 2D RoPE in every attention (lesson 05).
"""

import torch
import torch.nn as nn

from .adaln import AdaLN, AdaLNBlock
from .attention import Attention, Mlp, ViTBlock, block_macs
from .data import Tokenizer
from .embeddings import CaptionEmbedder, TimestepEmbedder, null_caption
from .patchify import PatchEmbed, patch_tokens, unpatchify
from .rope import layer_angles, rotary_for

CONDITIONINGS = ("in_context", "cross_attention", "adaln", "adaln_zero")
POSITIONS = ("absolute", "rope_axial", "rope_mixed", "none")


class CrossAttentionBlock(nn.Module):
    """ViT block with a cross-attention layer to the condition tokens between self-attention and the MLP."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.cross = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm3, self.mlp = nn.LayerNorm(dim), Mlp(dim, mlp_ratio)

    def forward(self, x, context, context_mask, rope=None):
        x = x + self.attn(self.norm1(x), rope=rope)  # (B, N, D)
        x = x + self.cross(self.norm2(x), context, context_mask)  # queries: patches; keys, values: condition
        return x + self.mlp(self.norm3(x))


class DiT(nn.Module):
    """A caption-conditional DiT on the course contract model(x_t, t, (ids, mask)) -> v.

    conditioning: "in_context" (time and caption word tokens appended to the sequence), "cross_attention"
    (patches attend to time + caption tokens in every block), "adaln" or "adaln_zero" (c = time + pooled
    caption modulates every block).
    pos: "absolute" (2D sine-cosine added to the tokens), "rope_axial" or "rope_mixed" (2D RoPE in every
    self-attention; mixed learns its frequencies per layer and head), or "none".
    input_size is the training latent size (for gflops); any size divisible by patch_size runs.
    """

    def __init__(self, conditioning: str = "adaln_zero", input_size: int = 8, patch_size: int = 2,
                 in_channels: int = 4, dim: int = 128, depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0,
                 max_len: int = 12, vocab_size: int = None, pos: str = "absolute"):
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}.")
        if pos not in POSITIONS:
            raise ValueError(f"pos must be one of {POSITIONS}, got {pos!r}.")
        self.config = {"conditioning": conditioning, "input_size": input_size, "patch_size": patch_size,
                       "in_channels": in_channels, "dim": dim, "depth": depth, "heads": heads,
                       "mlp_ratio": mlp_ratio, "max_len": max_len, "vocab_size": vocab_size, "pos": pos}
        self.conditioning, self.patch_size, self.in_channels = conditioning, patch_size, in_channels
        self.max_len, self.pos = max_len, pos
        self.x_embedder = PatchEmbed(patch_size, in_channels, dim)
        self.rope = rotary_for(pos, dim // heads, heads, depth)
        self.t_embedder = TimestepEmbedder(dim)
        self.c_embedder = CaptionEmbedder(vocab_size or len(Tokenizer()), max_len, dim)
        self.word_proj = nn.Linear(self.c_embedder.word.embedding_dim, dim)  # word tokens for in-context / cross-attn
        if conditioning in ("adaln", "adaln_zero"):
            gated = conditioning == "adaln_zero"
            self.blocks = nn.ModuleList([AdaLNBlock(dim, heads, dim, gated, mlp_ratio) for _ in range(depth)])
        elif conditioning == "cross_attention":
            self.blocks = nn.ModuleList([CrossAttentionBlock(dim, heads, mlp_ratio) for _ in range(depth)])
        else:
            self.blocks = nn.ModuleList([ViTBlock(dim, heads, mlp_ratio) for _ in range(depth)])
        self.final_norm = AdaLN(dim, dim)
        self.final_linear = nn.Linear(dim, patch_size * patch_size * in_channels)
        self.initialize_weights()

    def initialize_weights(self):
        # Zero-out the output layer: the untrained DiT predicts v = 0.
        nn.init.zeros_(self.final_linear.weight)
        nn.init.zeros_(self.final_linear.bias)
        nn.init.zeros_(self.final_norm.modulation[-1].weight)
        nn.init.zeros_(self.final_norm.modulation[-1].bias)
        if self.conditioning == "adaln_zero":
            # Zero-out adaLN modulation layers: every gate is 0, so every block starts as the identity.
            for block in self.blocks:
                nn.init.zeros_(block.modulation.weight)
                nn.init.zeros_(block.modulation.bias)

    def null_condition(self) -> tuple:
        return null_caption(self.max_len)

    def condition_tokens(self, t, ids, mask):
        """The time token and the caption's word tokens: (B, 1 + L, D) and their mask (B, 1 + L)."""
        words = self.word_proj(self.c_embedder.tokens(ids, mask))  # (B, L, D)
        tokens = torch.cat([self.t_embedder(t)[:, None], words], dim=1)
        return tokens, torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)

    def embed_patches(self, x) -> tuple:
        """x (B, C, H, W) -> patch tokens (B, N, D) with absolute positions added if pos is "absolute", and the
        rotary angles of each block (a list of None without RoPE); N = (H/p)(W/p) for any H, W divisible by p."""
        tokens, h, w = patch_tokens(x, self.x_embedder, self.pos == "absolute", "DiT")
        return tokens, layer_angles(self.rope, h, w, len(self.blocks))

    def forward(self, x, t, cond):
        """x (B, C, H, W), t (B,), cond = (ids, mask) each (B, L) -> v (B, C, H, W)."""
        tokens, angles = self.embed_patches(x)  # (B, N, D), one rotary angle table (or None) per block
        c, h, w = x.shape[1:]
        p = self.patch_size
        ids, mask = cond
        c_vec = self.t_embedder(t) + self.c_embedder(ids, mask)  # (B, D)
        if self.conditioning in ("adaln", "adaln_zero"):
            for block, rope in zip(self.blocks, angles):
                tokens = block(tokens, c_vec, rope)
        elif self.conditioning == "cross_attention":
            context, context_mask = self.condition_tokens(t, ids, mask)
            for block, rope in zip(self.blocks, angles):
                tokens = block(tokens, context, context_mask, rope)
        else:
            context, context_mask = self.condition_tokens(t, ids, mask)
            n = tokens.shape[1]
            seq = torch.cat([tokens, context], dim=1)  # (B, N + 1 + L, D); padding is masked out of attention
            seq_mask = torch.cat([torch.ones_like(context_mask[:, :1]).expand(-1, n), context_mask], dim=1)
            for block, rope in zip(self.blocks, angles):
                if rope is not None:  # condition tokens have no grid position: angle 0, no rotation
                    rope = torch.cat([rope, rope.new_zeros(*rope.shape[:-2], seq.shape[1] - n, rope.shape[-1])], -2)
                seq = block(seq, rope, seq_mask)
            tokens = seq[:, :n]  # drop the condition tokens
        out = self.final_linear(self.final_norm(tokens, c_vec))  # (B, N, p*p*C)
        return unpatchify(out, p, h // p, w // p, c)  # (B, C, H, W)

    def gflops(self) -> float:
        """Multiply-accumulates per image of the transformer blocks, in billions (the DiT paper's Gflops)."""
        n = (self.config["input_size"] // self.patch_size) ** 2
        dim, ratio = self.config["dim"], self.config["mlp_ratio"]
        if self.conditioning == "in_context":
            n += 1 + self.max_len
        context = 1 + self.max_len if self.conditioning == "cross_attention" else 0
        per_block = block_macs(n, dim, ratio, context)
        if self.conditioning in ("adaln", "adaln_zero"):
            per_block += dim * self.blocks[0].modulation.out_features
        return len(self.blocks) * per_block / 1e9


def dit_tiny(conditioning: str = "adaln_zero", **overrides) -> DiT:
    """The lesson's DiT: width 128, depth 4, 4 heads, patch 2 on 8x8 latents (16 tokens)."""
    return DiT(conditioning, **{"dim": 128, "depth": 4, "heads": 4, "patch_size": 2, **overrides})


def dit_small(conditioning: str = "adaln_zero", **overrides) -> DiT:
    """The shipped lesson 04 DiT: width 128, depth 6, 4 heads, patch 2 on 8x8 latents."""
    return DiT(conditioning, **{"dim": 128, "depth": 6, "heads": 4, "patch_size": 2, **overrides})
