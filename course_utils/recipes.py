"""How the lesson checkpoints that ship in data/ were trained, and the command that retrains them:

    python -m course_utils.recipes unet --steps 6000     # lesson 02, data/unet.pt
    python -m course_utils.recipes dit --steps 12000     # lesson 04, data/dit.pt
    python -m course_utils.recipes mmdit --steps 12000   # lesson 06, data/mmdit.pt

One recipe for every denoiser: caption-conditional flow matching on the train latents, logit-normal times,
10% null captions for classifier-free guidance, an EMA of the weights; saved in float16. The MMDiT recipe adds
two options (RECIPE_OPTIONS): it draws two-object (relation) scenes 2.5x as often, since single-object
captions are learned early and binding colours to shapes in two-object captions is learned late, and it decays
the learning rate along a cosine.
"""

import argparse
import time
from pathlib import Path

import torch

from .checkpoint import load_shipped, register_shipped
from .config import DATA_DIR, get_device
from .data import MODES
from .dit import DiT, dit_small
from .latents import load_latents
from .metrics import evaluate
from .mmdit import MMDiT, mmdit_small
from .train import save_model, train
from .unet import UNet, unet_small

MODELS = {"unet": (unet_small, UNet), "dit": (dit_small, DiT), "mmdit": (mmdit_small, MMDiT)}
RECIPE_OPTIONS = {"unet": {}, "dit": {}, "mmdit": {"mode_weights": {"relation": 2.5}, "lr_decay": "cosine"}}


def mode_sample_weights(scenes: torch.Tensor, mode_weights: dict) -> torch.Tensor:
    """Per-sample drawing weights (N,) from the scene modes (scenes[:, 0], ids into data.MODES); modes not named
    in mode_weights weigh 1."""
    unknown = set(mode_weights) - set(MODES)
    if unknown:
        raise ValueError(f"unknown scene mode(s) {sorted(unknown)}; the modes are {MODES}.")
    per_mode = torch.tensor([float(mode_weights.get(m, 1.0)) for m in MODES])
    return per_mode[scenes[:, 0]]


def train_recipe(model, steps: int, seed: int = 0, batch_size: int = 128, lr: float = 2e-3, mode_weights=None,
                 lr_decay: str = "constant", callback=None, desc: str = "train"):
    """Train `model` with the course recipe; returns (EMA model, History).

    mode_weights: e.g. {"relation": 2.5} draws relation scenes 2.5x as often as the others (None: uniform).
    """
    data, val = load_latents("train"), load_latents("val")
    weights = mode_sample_weights(data.scenes, mode_weights) if mode_weights else None
    history = train(model, data.latents, (data.ids, data.mask), steps=steps, batch_size=batch_size, lr=lr,
                    ema_decay=0.999, cfg_dropout=0.1, null_cond=model.null_condition(), schedule="logit_normal",
                    val=(val.latents[:1000], (val.ids[:1000], val.mask[:1000])), seed=seed, lr_decay=lr_decay,
                    sample_weights=weights, callback=callback, desc=desc)
    return history.ema, history


def load_lesson_model(name: str, device="cpu"):
    """A shipped lesson checkpoint ("unet", "dit" or "mmdit"), sha256-verified, rebuilt from its config, in
    eval mode."""
    if name not in MODELS:
        raise ValueError(f"unknown lesson model {name!r}; the shipped ones are {sorted(MODELS)}.")
    ckpt = load_shipped(f"{name}.pt")
    model = MODELS[name][1](**ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval().to(device)


def main():
    parser = argparse.ArgumentParser(description="Retrain a lesson checkpoint and write data/<name>.pt.")
    parser.add_argument("name", choices=sorted(MODELS))
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--snapshots", type=Path, default=None,
                        help="also save the EMA weights at every validation here (for learning curves)")
    args = parser.parse_args()
    start = time.time()
    torch.manual_seed(args.seed)
    model = MODELS[args.name][0]().to(get_device())

    def snapshot(step, history):
        args.snapshots.mkdir(parents=True, exist_ok=True)
        save_model(args.snapshots / f"{args.name}_{step:06d}.pt", history.ema, model.config, step=step, half=True)

    model, history = train_recipe(model, args.steps, args.seed, **RECIPE_OPTIONS[args.name],
                                  callback=snapshot if args.snapshots else None, desc=args.name)
    model = model.cpu()
    save_model(DATA_DIR / f"{args.name}.pt", model, model.config, step=args.steps, half=True)
    print(f"trained in {time.time() - start:.0f} s; val loss {history.final_val_loss():.4f}; "
          f"sha256 {register_shipped(f'{args.name}.pt')}")
    for scale in (1.0, 2.0, 3.0, 4.0):
        single = evaluate(model, n=500, cfg_scale=scale)
        relation = evaluate(model, n=500, mode="relation", cfg_scale=scale)
        print(f"cfg {scale}: adherence single {single['adherence']:.3f}, two-object {relation['adherence']:.3f}; "
              f"Frechet {single['frechet']:.2f}, {relation['frechet']:.2f}")


if __name__ == "__main__":
    main()
