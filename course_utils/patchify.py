"""Patchification (Dosovitskiy et al., 2021; Peebles & Xie, 2023): a latent cut into p x p patches
becomes a sequence of tokens, and a sequence of tokens becomes a latent again.

Tokens run row-major over the patch grid; each token's features are ordered (patch row, patch column,
channel), as in the DiT reference. A 2D sine-cosine table gives each token its absolute position.
"""

import torch
import torch.nn as nn
from einops import rearrange


def _check_divisible(h: int, w: int, p: int):
    if p < 1 or h % p or w % p:
        allowed = [q for q in range(1, min(h, w) + 1) if h % q == 0 and w % q == 0]
        raise ValueError(f"patch size {p} must divide the input's height and width, got {h}x{w}; "
                         f"allowed patch sizes here: {allowed}.")


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, p*p*C) with N = (H/p)(W/p), patches row-major."""
    if x.ndim != 4:
        raise ValueError(f"patchify expects (B, C, H, W), got shape {tuple(x.shape)}.")
    _check_divisible(x.shape[2], x.shape[3], p)
    return rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=p, q=p)


def unpatchify(tokens: torch.Tensor, p: int, h: int, w: int, c: int) -> torch.Tensor:
    """(B, N, p*p*c) -> (B, c, h*p, w*p), the inverse of patchify; h, w count patches."""
    if tokens.ndim != 3 or tokens.shape[1] != h * w or tokens.shape[2] != p * p * c:
        raise ValueError(f"unpatchify expects tokens (B, {h * w}, {p * p * c}) for a {h}x{w} grid of {p}x{p}x{c} "
                         f"patches, got {tuple(tokens.shape)}.")
    return rearrange(tokens, "b (h w) (p q c) -> b c (h p) (w q)", h=h, w=w, p=p, q=p, c=c)


class PatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, N, dim): patchify, then one linear map per token (a stride-p convolution)."""

    def __init__(self, patch_size: int, in_channels: int, dim: int):
        super().__init__()
        self.patch_size, self.in_channels = patch_size, in_channels
        self.proj = nn.Linear(patch_size * patch_size * in_channels, dim)

    def forward(self, x):
        return self.proj(patchify(x, self.patch_size))  # (B, N, dim)


def patch_tokens(x: torch.Tensor, embedder: PatchEmbed, absolute: bool, model: str) -> tuple:
    """x (B, C, H, W) -> tokens (B, N, D) and the patch grid (h, w), with the 2D sine-cosine table added if
    `absolute`; any H, W divisible by the patch size. `model` names the caller in the error."""
    if x.ndim != 4 or x.shape[1] != embedder.in_channels:
        raise ValueError(f"this {model} takes latents (B, {embedder.in_channels}, H, W), got {tuple(x.shape)}.")
    h, w = x.shape[2] // embedder.patch_size, x.shape[3] // embedder.patch_size
    tokens = embedder(x)  # (B, N, D); patchify checks that p divides H and W
    if absolute:
        tokens = tokens + sincos_pos_embed_2d(tokens.shape[-1], h, w).to(tokens)
    return tokens, h, w


def sincos_1d(dim: int, positions: torch.Tensor, max_period: float = 10_000.0) -> torch.Tensor:
    """positions (N,) -> (N, dim): [sin(pos * w_i), cos(pos * w_i)], w_i = max_period^(-i / (dim/2))."""
    if dim % 2:
        raise ValueError(f"a sine-cosine embedding needs an even dim, got {dim}.")
    freqs = max_period ** (-torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angles = positions.double()[:, None] * freqs[None]  # (N, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_pos_embed_2d(dim: int, h: int, w: int) -> torch.Tensor:
    """(h * w, dim) absolute position embedding of an h x w token grid, row-major: the first half of the
    channels encodes the row, the second half the column."""
    if dim % 4:
        raise ValueError(f"the 2D sine-cosine embedding needs dim divisible by 4, got {dim}.")
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.cat([sincos_1d(dim // 2, rows.flatten()), sincos_1d(dim // 2, cols.flatten())], dim=1)
