"""Condition embedders: the diffusion time t and the caption, turned into vectors a denoiser can use.

Timesteps get the sinusoidal features of the Transformer (Vaswani et al., 2017) followed by an MLP, as in
DDPM and DiT. Captions get word and word-position embeddings; the pooled vector keeps word order (an MLP over
the whole sequence), so "a red circle above a blue square" and "a blue circle above a red square" differ.
"""

import math

import torch
import torch.nn as nn

from .data import Tokenizer

VOCAB_SIZE = len(Tokenizer())  # the caption grammar's words and the padding id


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """t (B,) in [0, 1] -> (B, dim) sinusoidal features [cos(w_i * 1000 t), sin(w_i * 1000 t)]."""
    if dim % 2:
        raise ValueError(f"the timestep embedding needs an even dim, got {dim}.")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000 * t.float()[:, None] * freqs[None]  # (B, half): t in [0, 1] spans DDPM's 0..1000
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepEmbedder(nn.Module):
    """t (B,) -> (B, hidden): sinusoidal features, then a two-layer MLP."""

    def __init__(self, hidden: int, frequency_dim: int = 128):
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, t):
        return self.mlp(timestep_embedding(t, self.frequency_dim))


class CaptionEmbedder(nn.Module):
    """Token ids and mask (B, L) -> word tokens (B, L, word_dim) and a pooled caption vector (B, hidden).

    The null caption (all padding, mask all False) maps to a learned `null` vector: the unconditional
    branch of classifier-free guidance.
    """

    def __init__(self, vocab_size: int, max_len: int, hidden: int, word_dim: int = 64, pooled: bool = True):
        super().__init__()
        self.word = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        self.position = nn.Parameter(torch.zeros(1, max_len, word_dim))
        if pooled:  # pooled=False: word tokens only, for a model that never reads a caption vector
            self.pool = nn.Sequential(nn.Linear(max_len * word_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            self.null = nn.Parameter(torch.zeros(hidden))
        nn.init.normal_(self.position, std=0.02)
        nn.init.normal_(self.word.weight, std=0.02)

    def tokens(self, ids, mask):
        """(B, L) -> (B, L, word_dim); padding positions are zero."""
        return (self.word(ids) + self.position[:, : ids.shape[1]]) * mask[..., None]

    def forward(self, ids, mask):
        if not hasattr(self, "pool"):
            raise RuntimeError("this CaptionEmbedder was built with pooled=False: it gives word tokens only "
                               "(.tokens), no pooled caption vector.")
        pooled = self.pool(self.tokens(ids, mask).flatten(1))  # (B, hidden)
        return torch.where(mask.any(1, keepdim=True), pooled, self.null.expand_as(pooled))


def null_caption(max_len: int, device=None) -> tuple:
    """The null caption for classifier-free guidance: ids (1, max_len) of padding and an all-False mask."""
    return (torch.zeros(1, max_len, dtype=torch.long, device=device),
            torch.zeros(1, max_len, dtype=torch.bool, device=device))


class CaptionDenoiser(nn.Module):
    """What the course's caption-conditional denoisers (U-Net, DiT, MMDiT) share: a config dataclass
    `self.config` with in_channels, input_size (the training latent side) and max_len, the contract
    model(x_t, t, (ids, mask)) -> v, and the null caption of classifier-free guidance."""

    @classmethod
    def from_config(cls, config: dict) -> "CaptionDenoiser":
        """Rebuild the model from the config dict a checkpoint stores."""
        return cls(cls.Config(**config))

    def forward_gflops(self) -> float:
        """Multiply-accumulates of one whole forward (embeddings and text encoder included) on one latent of the
        training size, in billions, by torch's flop counter: the same count for every architecture."""
        from torch.utils.flop_counter import FlopCounterMode

        cfg, device = self.config, next(self.parameters()).device
        x = torch.zeros(1, cfg.in_channels, cfg.input_size, cfg.input_size, device=device)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            self(x, torch.full((1,), 0.5, device=device), self.null_condition())
        return counter.get_total_flops() / 2e9

    def null_condition(self) -> tuple:
        """The null caption (ids, mask), each (1, max_len), on the model's device."""
        return null_caption(self.config.max_len, next(self.parameters()).device)

    def check_inputs(self, x, t, cond) -> None:
        """The contract's shapes and dtypes (no values, so no host sync): x (B, C, H, W) with C = in_channels,
        t (B,) floating, cond = (ids, mask) with ids integer and mask bool, each (B, max_len)."""
        name, cfg = type(self).__name__, self.config
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != cfg.in_channels:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"this {name} takes latents (B, {cfg.in_channels}, H, W), got {got} for x.")
        weight = next(self.parameters())
        if x.dtype != weight.dtype:
            raise ValueError(f"x must be {weight.dtype} like this {name}'s weights, got {x.dtype}; convert it with "
                             f"x.to({weight.dtype}) (or the model with model.to(x.dtype)).")
        b = x.shape[0]
        if not isinstance(t, torch.Tensor) or t.shape != (b,) or not t.is_floating_point():
            got = (tuple(t.shape), str(t.dtype)) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"t must be a float tensor of shape ({b},), one time per latent in x, got {got}.")
        if not isinstance(cond, (tuple, list)) or len(cond) != 2:
            raise ValueError(f"cond must be a caption batch (ids, mask) from Tokenizer.encode, got "
                             f"{type(cond).__name__}.")
        ids, mask = cond
        if not (isinstance(ids, torch.Tensor) and isinstance(mask, torch.Tensor)):
            raise ValueError(f"cond's ids and mask must be tensors (Tokenizer.encode gives them), got "
                             f"{type(ids).__name__} and {type(mask).__name__}.")
        if not all(v.device == x.device for v in (t, ids, mask)):
            raise ValueError(f"x, t and cond must be on one device, got x on {x.device}, t on {t.device}, cond on "
                             f"{ids.device} and {mask.device}.")
        if ids.shape != (b, cfg.max_len) or mask.shape != (b, cfg.max_len):
            raise ValueError(f"cond's ids and mask must each be ({b}, {cfg.max_len}) for x of batch {b} (one caption "
                             f"per latent, Tokenizer({cfg.max_len})), got {tuple(ids.shape)} and {tuple(mask.shape)}.")
        if ids.is_floating_point() or ids.is_complex() or mask.dtype != torch.bool:
            raise ValueError(f"cond's ids must be integers and its mask bool (True on real words), got {ids.dtype} "
                             f"and {mask.dtype}; a float mask would be read as an additive attention bias.")
