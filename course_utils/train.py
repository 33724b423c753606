"""The one training loop every lesson uses: flow matching on latents, AdamW, clipping, EMA, validation.

Any denoiser on the course contract `model(x_t, t, cond) -> v` trains here; `cond` is None, class ids
(N,), or a text batch (ids (N, L), mask (N, L)), indexed per sample like the latents. The settings of a run are
one `TrainConfig`; the named presets below are the runs the lessons and the shipped models share.
Under torchrun the same loop runs data-parallel (DistributedDataParallel, Li et al. 2020): each process draws its
share of the batch, DDP averages the gradients, and rank 0 alone keeps the EMA, validates and saves.
"""

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .checkpoint import write_atomic
from .ddp import all_ranks, gather_rank_states, process_group
from .flow import SCHEDULES, check_null_condition, drop_condition, flow_matching_loss

LR_DECAYS = ("constant", "cosine")
LOG_EVERY = 20  # steps between the loop's looks at the loss (the only host syncs outside validation)
# Under torchrun, rank r draws from seed + r * RANK_SEED_STRIDE: rank 0 keeps the run's seed, the others get streams no
# small seed reaches (the CPU generator, mt19937, keeps only a seed's low 32 bits, so the stride stays below 2**32).
RANK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class TrainConfig:
    """The settings of one training run.

    steps: AdamW steps of `batch_size` samples (under torchrun: all processes' together); lr: peak learning rate
    after `warmup` linear steps, then constant or cosine to 0 (`lr_decay`); grad_clip: largest gradient norm;
    ema_decay: keep an exponential moving average of the weights (None: no EMA); cfg_dropout: probability of
    replacing a sample's condition by the null condition (for classifier-free guidance); schedule: training times,
    "uniform" or "logit_normal"; val_every: validation and snapshot interval (default: 10 a run); seed: batches,
    noise and times; compile: torch.compile the model.
    """

    steps: int
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = None
    cfg_dropout: float = 0.0
    schedule: str = "uniform"
    warmup: int = 100
    lr_decay: str = "constant"
    val_every: int = None
    seed: int = 0
    compile: bool = False

    def __post_init__(self):
        for name in ("steps", "batch_size", "warmup", "seed"):
            value, low = getattr(self, name), 0 if name in ("warmup", "seed") else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"TrainConfig.{name} must be an integer >= {low}, got {value!r}.")
        if self.val_every is not None and (not isinstance(self.val_every, int) or self.val_every < 1):
            raise ValueError(f"TrainConfig.val_every must be a positive integer or None, got {self.val_every!r}.")
        for name in ("lr", "weight_decay", "grad_clip", "cfg_dropout") + (("ema_decay",) if self.ema_decay else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"TrainConfig.{name} must be a finite number, got {value!r}.")
        if not self.lr > 0 or not self.grad_clip > 0:
            raise ValueError(f"TrainConfig.lr and grad_clip must be positive, got lr={self.lr!r}, "
                             f"grad_clip={self.grad_clip!r}.")
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}.")
        if self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1) or None, got {self.ema_decay!r}.")
        if not 0 <= self.cfg_dropout <= 1:
            raise ValueError(f"TrainConfig.cfg_dropout must be in [0, 1], got {self.cfg_dropout!r}.")
        if not isinstance(self.compile, bool):
            raise ValueError(f"TrainConfig.compile must be True or False, got {self.compile!r}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule must be one of {SCHEDULES}, got {self.schedule!r}.")
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"TrainConfig.lr_decay must be one of {LR_DECAYS}, got {self.lr_decay!r}.")


# The lessons' live runs of caption-conditional denoisers (batch 64, 10% null captions, SD3's logit-normal times).
LESSON_RUN = TrainConfig(steps=500, batch_size=64, lr=1e-3, cfg_dropout=0.1, schedule="logit_normal")
# The shipped denoisers (python -m course_utils.retrain): batch 128, a higher lr, an EMA of the weights.
SHIPPED_RUN = TrainConfig(steps=6000, batch_size=128, lr=2e-3, ema_decay=0.999, cfg_dropout=0.1,
                          schedule="logit_normal")
# The shipped MMDiT: longer, with a cosine decay (binding colours to shapes is learned late).
MMDIT_RUN = replace(SHIPPED_RUN, steps=12_000, lr_decay="cosine")


@dataclass
class History:
    """What a run measured: (step, value) pairs, wall time, and the EMA model if one was kept."""

    train_loss: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    ema: torch.nn.Module = None
    losses: list = field(default_factory=list, repr=False)  # the step losses, on the device during the run

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
    _check_data(latents, cond, "latents", "cond")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
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


def _check_data(latents, cond, name: str, cond_name: str) -> None:
    """Shapes, lengths and finiteness of training data, once before the first step."""
    if not isinstance(latents, torch.Tensor) or latents.ndim < 2 or not latents.is_floating_point():
        got = (tuple(latents.shape), str(latents.dtype)) if isinstance(latents, torch.Tensor) else type(latents)
        raise ValueError(f"{name} must be a float tensor (N, C, h, w) of latents, got {got}.")
    if len(latents) == 0 or not torch.isfinite(latents).all():
        raise ValueError(f"{name} must be non-empty and finite (no NaN or inf); rebuild the latents "
                         "(delete data/cache/) or check how they were made.")
    for c in cond if isinstance(cond, tuple) else () if cond is None else (cond,):
        if len(c) != len(latents):
            raise ValueError(f"{cond_name} must hold one condition per latent: {len(latents)} latents in {name}, "
                             f"got {len(c)} conditions.")


def _check_finite(losses: list, step: int, config: TrainConfig, ddp: bool = False) -> None:
    """Stop a run whose loss went NaN or inf (checked every LOG_EVERY steps, before any snapshot is written);
    under DDP every rank stops when one does."""
    finite = torch.isfinite(torch.stack(losses)).all() if losses else torch.tensor(True)
    if not (all_ranks(finite) if ddp else finite):
        raise FloatingPointError(
            f"the training loss is not finite by step {step}: the weights hold NaN or inf. Likely causes: a learning "
            f"rate too high (lr={config.lr:g}), no gradient clipping (grad_clip={config.grad_clip:g}), or bad data. "
            "Nothing was saved over an earlier snapshot.")


def scale_batch(config: TrainConfig, batch_size: int) -> TrainConfig:
    """The same run at another batch size, with the learning rate scaled by the square-root rule for Adam
    (Malladi et al., 2022, "On the SDEs and scaling rules for adaptive gradient algorithms"): lr * sqrt(B / B0).
    Steps and warmup stay as they are, so a larger batch sees more samples.

    Measured (data/results/lr_scaling.json, scripts/lr_scaling.py: a small MMDiT, batch 64 -> 256 at equal samples,
    3 seeds): the square-root lr beats the kept one by 0.070 +- 0.023 in validation loss, and the linear rule's beats
    the square-root one by 0.036 +- 0.032 at that short budget; the one H100 run at 8x the batch used 1.5x the lr.
    The square-root rule sits between the two."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return replace(config, batch_size=batch_size, lr=config.lr * math.sqrt(batch_size / config.batch_size))


def save_snapshot(path, step: int, model, ema, opt, sched, gen: torch.Generator, history: "History",
                  config: TrainConfig, rank_states: list = None) -> None:
    """Everything a cut-off run needs to go on bit-exactly: weights, EMA, optimizer, scheduler, step, random states
    (under DDP also every rank's, as rank_states)."""
    state = {"step": step, "config": asdict(config), "model": model.state_dict(),
             "ema": None if ema is None else ema.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
             "train_loss": [float(x) for x in torch.stack(history.losses).cpu()] if history.losses else [],
             "val_loss": history.val_loss, "seconds": history.seconds}
    if rank_states is not None:
        state["rank_states"] = rank_states
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def _restore(path, model, ema, opt, sched, gen: torch.Generator, history: "History", config: TrainConfig) -> int:
    """Load a snapshot into the run's objects (under DDP: this rank's random states); returns its step."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["config"] != asdict(config):
        raise ValueError(f"the snapshot {path} was taken with another TrainConfig ({state['config']}); resume with "
                         f"the same settings, got {asdict(config)}.")
    ddp, rank, processes = process_group()
    taken_by = len(state.get("rank_states", [None]))
    if taken_by != processes:
        how = "python -m" if taken_by == 1 else f"torchrun --nproc-per-node {taken_by}"
        raise ValueError(f"the snapshot {path} was taken by {taken_by} process(es); resume it with as many ({how}), "
                         f"got {processes}.")
    if ddp:
        state["generator"], state["torch_rng"] = state["rank_states"][rank]
    model.load_state_dict(state["model"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    device = next(model.parameters()).device
    history.losses = [torch.tensor(x, device=device) for x in state["train_loss"]]
    history.val_loss, history.seconds = [tuple(v) for v in state["val_loss"]], state["seconds"]
    return state["step"]


def train(model, latents: torch.Tensor, cond=None, *, config: TrainConfig, val=None, null_cond=None,
          sample_weights: torch.Tensor = None, callback=None, snapshot=None, resume=None,
          desc: str = "train") -> History:
    """Train `model` in place with flow matching as `config` says; returns the History.

    latents: (N, C, h, w) training latents; cond: their conditions (or None). Both are moved to the model's device
    once, and batches are drawn there with a generator on that device.
    val: (latents, cond) held out, scored every `config.val_every` steps and at the end.
    null_cond: the condition CFG dropout puts in (default: model.null_condition()).
    sample_weights: (N,) relative probability of drawing each training sample (uniform if None).
    callback(step, history): called after every validation (history.val_loss and .ema are current), e.g. to save
    a snapshot. snapshot: a file to save the whole state to every `val_every` steps and at the end; resume: a
    snapshot file to go on from (same config), bit-exact on the CPU.
    The step never waits for the device: losses stay there and are read at logging (every 20 steps) and validation.
    AdamW is fused, the EMA one foreach lerp; on CUDA the forward pass runs under bf16 autocast, and
    config.compile compiles the model with torch.compile.
    Under torchrun (a process group is initialised) the model trains wrapped in DistributedDataParallel: each rank
    draws config.batch_size / processes samples from its own seed, DDP averages the gradients, and rank 0 alone
    keeps the EMA, validates, saves snapshots, calls `callback` and shows the progress bar.
    """
    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig (e.g. replace(LESSON_RUN, steps=200)), got {config!r:.60}.")
    _check_data(latents, cond, "latents", "cond")
    if val is not None:
        if not isinstance(val, (tuple, list)) or len(val) != 2:
            raise ValueError(f"val must be a pair (latents, cond) of held-out data, got {type(val).__name__}"
                             f"{f' of length {len(val)}' if isinstance(val, (tuple, list)) else ''}.")
        _check_data(val[0], val[1], "val[0]", "val[1]")
    if sample_weights is not None and not isinstance(sample_weights, torch.Tensor):
        raise ValueError(f"sample_weights must be a tensor ({len(latents)},), got {type(sample_weights).__name__}.")
    if sample_weights is not None and (sample_weights.shape != (len(latents),) or (sample_weights < 0).any()
                                       or not sample_weights.sum() > 0):
        raise ValueError(f"sample_weights must be ({len(latents)},) non-negative with a positive sum, got "
                         f"{tuple(sample_weights.shape)}.")
    if config.cfg_dropout > 0 and cond is not None and null_cond is None:
        if not hasattr(model, "null_condition"):
            raise ValueError("condition dropout for classifier-free guidance needs a null condition: pass null_cond "
                             "or give the model a null_condition() method.")
        null_cond = model.null_condition()
    if config.cfg_dropout > 0 and cond is not None:
        check_null_condition(null_cond, cond, len(latents))
    ddp, rank, processes = process_group()
    if config.batch_size % processes:
        raise ValueError(f"TrainConfig.batch_size is the batch of all {processes} processes together and must split "
                         f"evenly among them, got {config.batch_size}.")
    steps, batch_size = config.steps, min(config.batch_size // processes, len(latents))
    device = next(model.parameters()).device
    latents, cond, null_cond = latents.to(device), _to(cond, device), _to(null_cond, device)
    weights = None if sample_weights is None else sample_weights.to(device, torch.float)
    gen = torch.Generator(device=device).manual_seed(config.seed + rank * RANK_SEED_STRIDE)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.99),
                            fused=device.type in ("cuda", "cpu") or None)  # None: the default where not fused
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, steps, config.warmup, config.lr_decay))
    keep_ema = config.ema_decay is not None and rank == 0
    ema = copy.deepcopy(model).eval().requires_grad_(False) if keep_ema else None
    params, ema_params = list(model.parameters()), [] if ema is None else list(ema.parameters())
    history = History(ema=ema)
    first = 1 if resume is None else _restore(resume, model, ema, opt, sched, gen, history, config) + 1
    # DDP broadcasts rank 0's weights, then averages the gradients in backward. static_graph: it learns once which
    # parameters get no gradient (the MMDiT's last block computes a text stream that nothing reads).
    trained = DistributedDataParallel(model, static_graph=True) if ddp else model
    forward = torch.compile(trained) if config.compile else trained
    val_every = config.val_every or max(1, steps // 10)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    model.train()
    start = time.time() - history.seconds
    bar = tqdm(range(first, steps + 1), desc=desc, initial=first - 1, total=steps, disable=rank > 0)
    rank_states = None
    for step in bar:
        if weights is None:
            idx = torch.randint(len(latents), (batch_size,), generator=gen, device=device)
        else:
            idx = torch.multinomial(weights, batch_size, replacement=True, generator=gen)
        x1 = latents[idx]
        c = drop_condition(_take(cond, idx), null_cond, config.cfg_dropout, gen)
        with autocast:
            loss = flow_matching_loss(forward, x1, c, generator=gen, schedule=config.schedule)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip, foreach=True)
        opt.step()
        sched.step()
        if ema is not None:
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, params, 1 - config.ema_decay)
        history.losses.append(loss.detach())
        if step % val_every == 0 or step == steps or step % LOG_EVERY == 0:
            _check_finite(history.losses[-LOG_EVERY:], step, config, ddp)  # one host sync per logging interval
        if ddp and (step % val_every == 0 or step == steps):
            rank_states = gather_rank_states(gen)
        if rank > 0:
            continue  # validation, snapshots, callbacks and the progress bar are rank 0's
        if step % val_every == 0 or step == steps:
            if val is not None:
                history.val_loss.append((step, validation_loss(ema or model, *val)))
                bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{history.val_loss[-1][1]:.3f}")
            history.seconds = time.time() - start
            if snapshot is not None:
                save_snapshot(snapshot, step, model, ema, opt, sched, gen, history, config, rank_states)
            if val is not None and callback is not None:
                callback(step, history)
        elif step % LOG_EVERY == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    history.train_loss = list(zip(range(1, steps + 1), torch.stack(history.losses).float().cpu().tolist()))
    history.losses = []
    history.seconds = time.time() - start
    history.steps = steps
    return history

