"""The Diffusion Transformer (Peebles & Xie, 2023) on latents, with the paper's four ways to inject
the condition: in-context tokens, cross-attention, adaLN, and adaLN-Zero.

Patchify -> tokens + position -> blocks conditioned on c = time + caption -> final adaptive layer -> unpatchify.
Position enters as an absolute sine-cosine table added to the tokens, or as 2D RoPE in every attention (lesson 05).
"""

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from .adaln import AdaLNZeroBlock, FinalLayer
from .attention import Attention, Mlp, ViTBlock, block_macs, check_heads
from .embeddings import VOCAB_SIZE, CaptionDenoiser, CaptionEmbedder, TimestepEmbedder
from .patchify import PatchEmbed, patch_tokens, unpatchify
from .rope import check_position, layer_angles, rotary_for, with_unrotated

CONDITIONINGS = ("in_context", "cross_attention", "adaln", "adaln_zero")


@dataclass(frozen=True)
class DiTConfig:
    """Everything that builds a DiT; a checkpoint stores it, so nothing is resolved at load time.

    input_size is the training latent side (for gflops and sampling); any size divisible by patch_size runs.
    """

    conditioning: str = "adaln_zero"
    input_size: int = 8
    patch_size: int = 2
    in_channels: int = 4
    dim: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    max_len: int = 12
    vocab_size: int = VOCAB_SIZE
    pos: str = "absolute"

    def __post_init__(self):
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}.")
        check_position(self.pos)
        check_heads(self.dim, self.heads)


DIT_TINY = DiTConfig(dim=128, depth=4, heads=4, patch_size=2)  # the lessons' live runs: 16 tokens on 8x8 latents
DIT_SMALL = replace(DIT_TINY, depth=6)  # the shipped lesson 04 DiT


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


class DiT(CaptionDenoiser):
    """A caption-conditional DiT on the course contract model(x_t, t, (ids, mask)) -> v.

    conditioning: "in_context" (time and caption word tokens appended to the sequence), "cross_attention"
    (patches attend to time + caption tokens in every block), "adaln" or "adaln_zero" (c = time + pooled
    caption modulates every block). Each uses its own mechanism in the final layer too, as in the DiT paper: an
    adaLN final layer on c for the two modulated variants, a plain LayerNorm for the two whose tokens carry the
    condition (so those read no pooled caption vector at all).
    pos: "absolute" (2D sine-cosine added to the tokens), "rope_axial" or "rope_mixed" (2D RoPE in every
    self-attention; mixed learns its frequencies per layer and head), or "none".
    """

    Config = DiTConfig

    def __init__(self, config: DiTConfig = DIT_TINY):
        super().__init__()
        self.config = config
        dim, heads, depth, ratio = config.dim, config.heads, config.depth, config.mlp_ratio
        self.x_embedder = PatchEmbed(config.patch_size, config.in_channels, dim)
        self.rope = rotary_for(config.pos, dim // heads, heads, depth)
        self.t_embedder = TimestepEmbedder(dim)
        self.modulated = config.conditioning in ("adaln", "adaln_zero")
        self.c_embedder = CaptionEmbedder(config.vocab_size, config.max_len, dim, pooled=self.modulated)
        if self.modulated:
            gated = config.conditioning == "adaln_zero"
            self.blocks = nn.ModuleList([AdaLNZeroBlock(dim, heads, dim, gated, ratio) for _ in range(depth)])
        else:  # the condition as a sequence of tokens: the time token and the caption's words
            self.word_proj = nn.Linear(self.c_embedder.word.embedding_dim, dim)
            block = CrossAttentionBlock if config.conditioning == "cross_attention" else ViTBlock
            self.blocks = nn.ModuleList([block(dim, heads, ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(dim, config.patch_size**2 * config.in_channels, dim if self.modulated else None)
        self.initialize_weights()

    def initialize_weights(self):
        # Zero-out the output layer: the untrained DiT predicts v = 0.
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)
        if self.modulated:
            nn.init.zeros_(self.final_layer.norm.modulation.lin.weight)
            nn.init.zeros_(self.final_layer.norm.modulation.lin.bias)
        if self.config.conditioning == "adaln_zero":
            # Zero-out adaLN modulation layers: every gate is 0, so every block starts as the identity.
            for block in self.blocks:
                nn.init.zeros_(block.modulation.lin.weight)
                nn.init.zeros_(block.modulation.lin.bias)

    def condition(self, t, cond):
        """The conditioning vector c = time embedding + pooled caption: t (B,), cond (ids, mask) -> (B, D)."""
        return self.t_embedder(t) + self.c_embedder(*cond)

    def condition_tokens(self, t, ids, mask):
        """The time token and the caption's word tokens: (B, 1 + L, D) and their mask (B, 1 + L)."""
        words = self.word_proj(self.c_embedder.tokens(ids, mask))  # (B, L, D)
        tokens = torch.cat([self.t_embedder(t)[:, None], words], dim=1)
        return tokens, torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)

    def embed_patches(self, x) -> tuple:
        """x (B, C, H, W) -> patch tokens (B, N, D) with absolute positions added if pos is "absolute", and the
        rotary angles of each block (a list of None without RoPE); N = (H/p)(W/p) for any H, W divisible by p."""
        tokens, h, w = patch_tokens(x, self.x_embedder, self.config.pos == "absolute", "DiT")
        return tokens, layer_angles(self.rope, h, w, len(self.blocks), x.device)

    def block_input(self, x, t, cond, block: int) -> tuple:
        """What adaLN block `block` receives: its input tokens (B, N, D), c (B, D) and its rotary angles (or None).
        For the adaLN variants only (the AdaLN explorer reads it)."""
        self._check_modulated("block_input")
        tokens, angles = self.embed_patches(x)
        c = self.condition(t, cond)
        for previous, rope in zip(self.blocks[:block], angles):
            tokens = previous(tokens, c, rope)
        return tokens, c, angles[block]

    def modulation(self, t, cond, block: int) -> tuple:
        """The named modulation of block `block` for t (B,) and cond: (attention, MLP), each a
        ModulationOut(shift, scale, gate) of (B, D) tensors (gate None for plain adaLN)."""
        self._check_modulated("modulation")
        return self.blocks[block].modulation(self.condition(t, cond))

    def _check_modulated(self, what: str):
        if not self.modulated:
            raise ValueError(f"DiT.{what} reads an adaLN block; this DiT's conditioning is "
                             f"{self.config.conditioning!r} (use 'adaln' or 'adaln_zero').")

    def forward(self, x, t, cond):
        """x (B, C, H, W), t (B,), cond = (ids, mask) each (B, L) -> v (B, C, H, W)."""
        self.check_inputs(x, t, cond)
        tokens, angles = self.embed_patches(x)  # (B, N, D), one rotary angle table (or None) per block
        c, h, w = x.shape[1:]
        p = self.config.patch_size
        ids, mask = cond
        c_vec = self.condition(t, cond) if self.modulated else None  # (B, D): time + pooled caption
        if self.modulated:
            for block, rope in zip(self.blocks, angles):
                tokens = block(tokens, c_vec, rope)
        elif self.config.conditioning == "cross_attention":
            context, context_mask = self.condition_tokens(t, ids, mask)
            for block, rope in zip(self.blocks, angles):
                tokens = block(tokens, context, context_mask, rope)
        else:
            context, context_mask = self.condition_tokens(t, ids, mask)
            n = tokens.shape[1]
            seq = torch.cat([tokens, context], dim=1)  # (B, N + 1 + L, D); padding is masked out of attention
            seq_mask = torch.cat([torch.ones_like(context_mask[:, :1]).expand(-1, n), context_mask], dim=1)
            for block, rope in zip(self.blocks, angles):
                if rope is not None:  # condition tokens have no grid position: they are not rotated
                    rope = with_unrotated(rope, seq.shape[1] - n)
                seq = block(seq, rope, seq_mask)
            tokens = seq[:, :n]  # drop the condition tokens
        out = self.final_layer(tokens, c_vec)  # (B, N, p*p*C); c_vec None: a plain LayerNorm
        return unpatchify(out, p, h // p, w // p, c)  # (B, C, H, W)

    def gflops(self) -> float:
        """Multiply-accumulates per image of the transformer blocks, in billions (the DiT paper's Gflops)."""
        cfg = self.config
        n = (cfg.input_size // cfg.patch_size) ** 2
        if cfg.conditioning == "in_context":
            n += 1 + cfg.max_len
        context = 1 + cfg.max_len if cfg.conditioning == "cross_attention" else 0
        per_block = block_macs(n, cfg.dim, cfg.mlp_ratio, context)
        if self.modulated:
            per_block += cfg.dim * self.blocks[0].modulation.lin.out_features
        return len(self.blocks) * per_block / 1e9


def dit_tiny(conditioning: str = "adaln_zero", **overrides) -> DiT:
    """The lesson's DiT: width 128, depth 4, 4 heads, patch 2 on 8x8 latents (16 tokens)."""
    return DiT(replace(DIT_TINY, conditioning=conditioning, **overrides))


def dit_small(conditioning: str = "adaln_zero", **overrides) -> DiT:
    """The shipped lesson 04 DiT: width 128, depth 6, 4 heads, patch 2 on 8x8 latents."""
    return DiT(replace(DIT_SMALL, conditioning=conditioning, **overrides))
