"""The diffusion U-Net (Ronneberger et al., 2015; Ho et al., 2020), on latents.

An encoder of residual blocks and downsamplings reaches global context at the bottleneck; a decoder of
residual blocks and transpose convolutions restores the resolution; skip connections carry each encoder
level's detail across to the decoder. Time and caption enter every residual block as a bias.
Unlike an autoencoder it returns a velocity with exactly the input's shape: `model(x_t, t, cond) -> v`.
"""

from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from .attention import Attention
from .embeddings import VOCAB_SIZE, CaptionDenoiser, CaptionEmbedder, TimestepEmbedder


@dataclass(frozen=True)
class UNetConfig:
    """Everything that builds a U-Net; a checkpoint stores it, so nothing is resolved at load time.

    channels: width at each resolution level; the input is downsampled len(channels) - 1 times.
    blocks: residual blocks per level (encoder and decoder). attention: self-attention at the lowest
    resolution. skip: concatenate encoder features into the decoder (False: the bottleneck is the only path).
    input_size: the training latent side (for sampling); any side divisible by 2^(levels - 1) runs.
    """

    in_channels: int = 4
    channels: tuple = (32, 64, 96)
    blocks: int = 2
    attention: bool = True
    skip: bool = True
    vocab_size: int = VOCAB_SIZE
    max_len: int = 12
    input_size: int = 8

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(self.channels))
        if any(c % 8 for c in self.channels):
            raise ValueError(f"every U-Net width must be a multiple of 8 (GroupNorm's 8 groups), got {self.channels}.")


UNET_SMALL = UNetConfig(channels=(32, 64, 96), blocks=2)  # the lesson's U-Net: 8 -> 4 -> 2, attention at 2x2


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, plus the embedding as a per-channel bias, twice; residual shortcut."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(8, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(8, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, emb):
        h = self.conv1(F.silu(self.norm1(x)))  # (B, c_out, H, W)
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over the pixels of a feature map (every position sees every other), residual."""

    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.norm = nn.GroupNorm(8, channels)
        self.attn = Attention(channels, heads)

    def forward(self, x):
        h, w = x.shape[-2:]
        tokens = rearrange(self.norm(x), "b c h w -> b (h w) c")
        return x + rearrange(self.attn(tokens), "b (h w) c -> b c h w", h=h, w=w)


class UNet(CaptionDenoiser):
    """A caption-conditional diffusion U-Net (see UNetConfig for its settings)."""

    Config = UNetConfig

    def __init__(self, config: UNetConfig = UNET_SMALL):
        super().__init__()
        self.config = config
        in_channels, channels, blocks, skip = config.in_channels, config.channels, config.blocks, config.skip
        emb_dim = 4 * channels[0]
        self.time_embed = TimestepEmbedder(emb_dim)
        self.caption_embed = CaptionEmbedder(config.vocab_size, config.max_len, emb_dim)
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)

        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skip_widths, c = [], channels[0]
        for level, width in enumerate(channels):
            blocks_here = nn.ModuleList()
            for _ in range(blocks):
                blocks_here.append(ResBlock(c, width, emb_dim))
                c = width
                skip_widths.append(c)
            self.down.append(blocks_here)
            if level < len(channels) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))

        self.mid1 = ResBlock(c, c, emb_dim)
        self.mid_attn = AttentionBlock(c) if config.attention else nn.Identity()
        self.mid2 = ResBlock(c, c, emb_dim)

        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, width in reversed(list(enumerate(channels))):
            blocks_here = nn.ModuleList()
            for _ in range(blocks):
                c_in = c + (skip_widths.pop() if skip else 0)
                blocks_here.append(ResBlock(c_in, width, emb_dim))
                c = width
            self.up.append(blocks_here)
            if level > 0:
                self.upsample.append(nn.ConvTranspose2d(c, channels[level - 1], 4, stride=2, padding=1))
                c = channels[level - 1]

        self.norm_out = nn.GroupNorm(8, c)
        self.conv_out = nn.Conv2d(c, in_channels, 3, padding=1)
        self.initialize_weights()

    def initialize_weights(self):
        # Zero-out the output layer: the untrained U-Net predicts v = 0 everywhere.
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x, t, cond):
        """x (B, C, H, W), t (B,), cond = (ids, mask) each (B, L) -> v (B, C, H, W)."""
        self.check_inputs(x, t, cond)
        factor = 2 ** (len(self.down) - 1)
        if x.ndim != 4 or x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(f"the U-Net downsamples {len(self.down) - 1} times, so H and W must be divisible by "
                             f"{factor}; got input of shape {tuple(x.shape)}.")
        emb = self.time_embed(t) + self.caption_embed(*cond)  # (B, E)
        h = self.conv_in(x)  # (B, c0, H, W)
        skips = []
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, emb)
                skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)  # (B, c, H / 2^(level+1), ...)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)  # bottleneck
        for level, blocks in enumerate(self.up):
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1) if self.config.skip else h, emb)
            if level < len(self.upsample):
                h = self.upsample[level](h)  # (B, c, 2x the resolution)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C, H, W)


def unet_small(**overrides) -> UNet:
    """The lesson's U-Net: widths 32, 64, 96 on 8x8 latents (8 -> 4 -> 2), attention at 2x2."""
    return UNet(replace(UNET_SMALL, **overrides))

