"""The one training loop every lesson uses: flow matching on latents, AdamW, clipping, EMA, validation.

Any denoiser on the course contract `model(x_t, t, cond) -> v` trains here; `cond` is None, class ids
(N,), or a text batch (ids (N, L), mask (N, L)), indexed per sample like the latents.
"""

import copy
import math
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .flow import drop_condition, flow_matching_loss

LR_DECAYS = ("constant", "cosine")


@dataclass
class History:
    """What a run measured: (step, value) pairs, wall time, and the EMA model if one was kept."""

    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    ema: torch.nn.Module = None

    def __getitem__(self, key):
        return getattr(self, key)

    def final_val_loss(self) -> float:
        return self.val_loss[-1][1] if self.val_loss else float("nan")


def _take(cond, idx):
    """cond indexed by a batch of sample indices; works for None, a tensor, or a tuple of tensors."""
    if cond is None:
        return None
    if isinstance(cond, tuple):
        return tuple(c[idx] for c in cond)
    return cond[idx]


def _to(cond, device):
    if cond is None:
        return None
    if isinstance(cond, tuple):
        return tuple(c.to(device) for c in cond)
    return cond.to(device)


@torch.no_grad()
def validation_loss(model, latents: torch.Tensor, cond=None, batch_size: int = 256, seed: int = 0,
                    schedule: str = "uniform") -> float:
    """Flow-matching loss on held-out latents with fixed noise and times (comparable across runs)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for i in range(0, len(latents), batch_size):
        idx = torch.arange(i, min(i + batch_size, len(latents)))
        x1, c = latents[idx].to(device), _to(_take(cond, idx), device)
        total += flow_matching_loss(model, x1, c, generator=gen, schedule=schedule).item() * len(idx)
    model.train(was_training)
    return total / len(latents)


def lr_factor(step: int, steps: int, warmup: int, decay: str) -> float:
    """The learning-rate multiplier after `step` optimizer steps: linear warmup, then constant or cosine to 0."""
    ramp = min(1.0, (step + 1) / max(1, warmup))
    if decay == "constant":
        return ramp
    progress = min(1.0, max(0, step + 1 - warmup) / max(1, steps - warmup))
    return ramp * 0.5 * (1 + math.cos(math.pi * progress))


def train(model, latents: torch.Tensor, cond=None, *, steps: int, batch_size: int = 128, lr: float = 1e-3,
          weight_decay: float = 0.0, grad_clip: float = 1.0, ema_decay: float = None, cfg_dropout: float = 0.0,
          null_cond=None, schedule: str = "uniform", val=None, val_every: int = None, seed: int = 0,
          warmup: int = 100, lr_decay: str = "constant", sample_weights: torch.Tensor = None, callback=None,
          desc: str = "train") -> History:
    """Train `model` in place with flow matching for `steps` AdamW steps; returns the History.

    latents: (N, C, h, w) training latents; cond: their conditions (or None).
    val: (latents, cond) held out, scored every `val_every` steps and at the end.
    cfg_dropout: probability of replacing a sample's condition by `null_cond` (for CFG sampling).
    ema_decay: keep an exponential moving average of the weights (returned as History.ema).
    lr_decay: "constant" (after `warmup` linear steps) or "cosine" (down to 0 at the last step).
    sample_weights: (N,) relative probability of drawing each training sample (uniform if None).
    callback(step, history): called after every validation, e.g. to save a snapshot.
    On CUDA the forward pass runs under bf16 autocast.
    """
    if lr_decay not in LR_DECAYS:
        raise ValueError(f"lr_decay must be one of {LR_DECAYS}, got {lr_decay!r}.")
    if sample_weights is not None and (sample_weights.shape != (len(latents),) or (sample_weights < 0).any()):
        raise ValueError(f"sample_weights must be ({len(latents)},) non-negative, got {tuple(sample_weights.shape)}.")
    if len(latents) < batch_size:
        batch_size = len(latents)
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.99))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, warmup, lr_decay))
    ema = copy.deepcopy(model).eval().requires_grad_(False) if ema_decay else None
    history = History(ema=ema)
    val_every = val_every or max(1, steps // 10)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    model.train()
    start = time.time()
    bar = tqdm(range(1, steps + 1), desc=desc)
    for step in bar:
        if sample_weights is None:
            idx = torch.randint(len(latents), (batch_size,), generator=gen)
        else:
            idx = torch.multinomial(sample_weights, batch_size, replacement=True, generator=gen)
        x1 = latents[idx].to(device)
        c = _to(drop_condition(_take(cond, idx), null_cond, cfg_dropout, gen), device)
        with autocast:
            loss = flow_matching_loss(model, x1, c, generator=gen, schedule=schedule)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        sched.step()
        if ema is not None:
            with torch.no_grad():
                for p_ema, p in zip(ema.parameters(), model.parameters()):
                    p_ema.lerp_(p, 1 - ema_decay)
        history.train_loss.append((step, loss.item()))
        if val is not None and (step % val_every == 0 or step == steps):
            history.val_loss.append((step, validation_loss(ema or model, *val)))
            bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{history.val_loss[-1][1]:.3f}")
            if callback is not None:
                callback(step, history)
        elif step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    history.seconds = time.time() - start
    history.steps = steps
    return history


def save_model(path, model: torch.nn.Module, config: dict, step: int = 0, half: bool = False) -> str:
    """Save a model's state dict with the config that rebuilds it; returns the sha256.

    half: store floating-point weights as float16 (half the file; loading casts them back to float32).
    """
    state = {k: v.half() if half and v.is_floating_point() else v for k, v in model.state_dict().items()}
    return save_checkpoint(path, state, config, step)


def load_model(path, build, sha256: str = None) -> torch.nn.Module:
    """Rebuild a model with build(**config) and load its weights; in eval mode."""
    ckpt = load_checkpoint(path, sha256=sha256)
    model = build(**ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()
