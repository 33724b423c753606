"""Which learning rate goes with a 4x larger batch? A small measurement behind `train.scale_batch`'s rule.

A small MMDiT (width 64, depth 2) trains on the course latents with the MMDiT recipe at batch 64 (lr 2e-3), then at
batch 256 for a quarter of the steps (the same samples seen) with the lr kept, scaled by sqrt(4) = 2 (the
square-root rule) or by 4 (the linear rule), over 3 seeds. Lower validation loss is better. Writes
data/results/lr_scaling.json.

    python scripts/lr_scaling.py
"""

import json
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import torch

from course_utils.checkpoint import register_shipped, write_atomic
from course_utils.config import DATA_DIR, get_device
from course_utils.latents import load_latents
from course_utils.mmdit import mmdit_small
from course_utils.stats import mean_interval
from course_utils.train import MMDIT_RUN, train

BASE = replace(MMDIT_RUN, batch_size=64, lr=2e-3, steps=1200, warmup=50, ema_decay=None, val_every=10**9)
RULES = {"kept": 1.0, "square root": 2.0, "linear": 4.0}
SEEDS = (0, 1, 2)


def main():
    torch.set_num_threads(2)
    data, val = load_latents("train"), load_latents("val")
    held_out = (val.latents[:1000], (val.ids[:1000], val.mask[:1000]))
    runs = {"batch 64": BASE, **{f"batch 256, lr {name}": replace(BASE, batch_size=256, steps=BASE.steps // 4,
                                                                  lr=BASE.lr * factor)
                                 for name, factor in RULES.items()}}
    start, results = time.time(), {}
    for name, config in runs.items():
        losses = []
        for seed in SEEDS:
            torch.manual_seed(seed)
            model = mmdit_small(dim=64, depth=2, text_depth=1).to(get_device())
            history = train(model, data.latents, (data.ids, data.mask), config=replace(config, seed=seed),
                            val=held_out, desc=f"{name}, seed {seed}")
            losses.append(history.final_val_loss())
        print(f"{name:>26}: val loss {mean_interval(losses):.4f} (over seeds)")
        results[name] = {"seeds": list(SEEDS), "lr": config.lr, "batch_size": config.batch_size,
                         "steps": config.steps, "metrics": {"val_loss": losses}}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    payload = {"name": "lr_scaling", "claim": "at 4x the batch and the same samples, a larger lr trains better than "
               "the kept one; which rule (square root: 2x, linear: 4x) is best",
               "command": "python scripts/lr_scaling.py", "commit": commit, "device": str(get_device()),
               "seconds": round(time.time() - start), "budget": {"samples": BASE.batch_size * BASE.steps,
                                                                  "model": "MMDiT width 64, depth 2"},
               "variants": results}
    text = json.dumps(payload, indent=1)
    write_atomic(DATA_DIR / "results" / "lr_scaling.json", lambda tmp: Path(tmp).write_text(text))
    print(f"sha256 {register_shipped('results/lr_scaling.json')}")


if __name__ == "__main__":
    main()
