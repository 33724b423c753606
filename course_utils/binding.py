"""Attribute binding in the MMDiT: which stream carries it, and when training learns it (lesson 06, issue 16).

In "a red circle above a blue square" each colour must land on the right shape. The pooled caption vector drives
adaLN: one shift, scale and gate per channel, the same for every patch, so it cannot put red on the circle and blue
on the square. The per-token text stream, which every patch reads through joint attention, can. `binding_source`
measures it by a transplant: sample with the text tokens of caption A and the pooled vector of its colour-swapped
twin B ("a blue circle above a red square"), and let the judge say whose binding the image shows.

The learning curve: copies of a retrain run's snapshots (RUN/curve/snapshot-STEP.pt) are scored on held-out single-
and two-object captions, every stage of the two-object funnel, then the shipped model (and the one it replaced) on
500 captions per mode at CFG 2 and 3, and the transplant on the shipped model:

    python -m course_utils.binding runs/mmdit-gpu-recipe-cpu [--before REV]   # -> data/results/mmdit_binding.json

A finished retrain run of the MMDiT (on one GPU, issue 22) is recorded as it was made (command, commit, device,
training seconds, samples seen) with its scores on 500 captions per mode at CFG 2 and 3:

    python -m course_utils.retrain mmdit --out runs/mmdit-gpu        # on CUDA, the large-batch recipe
    python -m course_utils.binding runs/mmdit-gpu --recipe            # -> data/results/mmdit_gpu_recipe.json

`--save FILE` writes the result there instead of shipping it (a GPU machine's copy brings back only its $OUT).
"""

import argparse
import json
import re
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from .checkpoint import load_model
from .config import SEEDS, get_device
from .data import Tokenizer, caption_for, check_count, render_shapes
from .flow import generate
from .judge import load_judge, read_scenes, scene_objects
from .metrics import evaluate, matches_record, two_object_funnel
from .mmdit import MMDiT, mmdit_small
from .results import new_result, save_result, ship_result
from .retrain import retrain_command
from .vae import load_vae

N_CURVE, N_FINAL, CFG_FINAL = 200, 500, (2.0, 3.0)
FUNNEL = {"two objects": "two_objects", "colours": "colours_right", "shapes": "shapes_right", "bound": "bound",
          "relation": "adherence_two"}  # two_object_funnel's stages -> metric names of the result
RECIPE_CLAIM = ("On one GPU the MMDiT recipe (4.6 M samples at batch 1024) learns two-object binding in minutes: "
                "at least 88% two-object and 99% single-object adherence at CFG at most 3.")
RECIPE_AIMS = {"adherence_two": 0.88, "adherence_single": 0.99}  # issue 22's aims, at some CFG of CFG_FINAL,
RECIPE_TRAIN_SECONDS = 180  # in at most 3 minutes of training on one H100
CLAIM = ("Two-object binding is learned late: the MMDiT's two-object adherence rises long after its single-object "
         "one; the per-token text stream, not the pooled caption, carries the binding.")


def swap_colours(record: dict) -> dict:
    """A two-object (relation) record with its objects' colours exchanged: the same shapes and places, the other
    binding. The record passed in is not changed."""
    if record.get("mode") != "relation" or len(record.get("objects", ())) != 2:
        raise ValueError(f"swap_colours takes a two-object (relation) record, got mode {record.get('mode')!r}.")
    a, b = record["objects"]
    return {**record, "objects": [{**a, "colour": b["colour"]}, {**b, "colour": a["colour"]}]}


class PooledFrom(nn.Module):
    """A text encoder whose pooled vector comes from other captions: for a caption in `table` (ids row -> its
    partner's pooled vector (D,)), the tokens and mask are its own and the pooled vector is the partner's. Any other
    caption (the null caption of guidance, say) passes through unchanged."""

    def __init__(self, encoder: nn.Module, table: dict):
        super().__init__()
        self.encoder, self.table = encoder, table

    def forward(self, ids, mask):
        tokens, text_mask, pooled = self.encoder(ids, mask)  # (B, 1 + L, D), (B, 1 + L), (B, D)
        partners = [self.table.get(tuple(row.tolist())) for row in ids]
        rows = [i for i, p in enumerate(partners) if p is not None]
        if rows:
            pooled = pooled.clone()
            pooled[rows] = torch.stack([partners[i] for i in rows]).to(pooled)
        return tokens, text_mask, pooled


@contextmanager
def pooled_from(model: MMDiT, captions_a: list, captions_b: list):
    """Inside the block, `model` reads each caption of captions_a with its own text tokens but the pooled vector
    (the adaLN input) of the caption at the same index of captions_b. The text encoder is restored on exit."""
    if not isinstance(model, MMDiT):
        raise ValueError(f"pooled_from takes an MMDiT (the model with a pooled vector beside its text tokens), got "
                         f"{type(model).__name__}.")
    if len(captions_a) != len(captions_b):
        raise ValueError(f"captions_a and captions_b pair up one to one; got {len(captions_a)} and "
                         f"{len(captions_b)} captions.")
    tokenizer, device = Tokenizer(model.config.max_len), next(model.parameters()).device
    ids_a, _ = tokenizer.encode(captions_a)
    ids_b, mask_b = tokenizer.encode(captions_b)
    encoder = model.text_encoder
    with torch.no_grad():  # captions B are encoded once, not at every sampling step
        pooled_b = encoder(ids_b.to(device), mask_b.to(device))[2]  # (n, D)
    model.text_encoder = PooledFrom(encoder, {tuple(a.tolist()): p for a, p in zip(ids_a, pooled_b)})
    try:
        yield model
    finally:
        model.text_encoder = encoder


def binding_scenes(n: int, seed: int = 0) -> list:
    """n held-out two-object records whose objects differ in colour and in shape (so the colour swap is another
    scene with the same words), drawn from evaluate's held-out captions of `seed`."""
    check_count("n", n, "captions")
    records, draw = [], 0
    while len(records) < n:
        batch = render_shapes(2 * n, seed=SEEDS["eval_prompts"] + seed + 10_007 * draw, mode="relation").records
        records += [r for r in batch if all(r["objects"][0][k] != r["objects"][1][k] for k in ("colour", "shape"))]
        draw += 1
    return records[:n]


def binding_source(model: MMDiT, n: int = 200, cfg_scale: float = 2.0, seed: int = 0, vae=None, judge=None) -> dict:
    """Which stream carries the binding: sample n two-object captions A as they are ("plain") and with the pooled
    vector of their colour-swapped twins B ("transplant"), from the same noise; the judge reads each image.

    Returns {"n", "plain": share of plain samples that show A, "tokens": share of transplanted samples that show
    A (the binding of the text tokens), "pooled": share that show B (the binding of the pooled vector)}."""
    vae, judge = vae or load_vae(), judge or load_judge()
    records = binding_scenes(n, seed)
    swapped = [swap_colours(r) for r in records]
    captions_a, captions_b = [caption_for(r) for r in records], [caption_for(r) for r in swapped]
    plain = read_scenes(judge, generate(model, captions_a, vae, cfg_scale=cfg_scale, seed=seed))
    with pooled_from(model, captions_a, captions_b):
        moved = read_scenes(judge, generate(model, captions_a, vae, cfg_scale=cfg_scale, seed=seed))

    def share(scenes, wanted):
        return sum(matches_record(scene_objects(scenes, i), r) for i, r in enumerate(wanted)) / n

    return {"n": n, "plain": share(plain, records), "tokens": share(moved, records), "pooled": share(moved, swapped)}


def scores(model, n: int, cfg_scale: float, vae, judge) -> dict:
    """Single-object adherence, every stage of the two-object funnel and both Frechet distances, on n held-out
    captions per mode (evaluate's seed 0)."""
    single = evaluate(model, n=n, mode="single", cfg_scale=cfg_scale, vae=vae, judge=judge)
    two = evaluate(model, n=n, mode="relation", cfg_scale=cfg_scale, vae=vae, judge=judge)
    funnel = two_object_funnel(two["scenes"], two["records"])
    return {"adherence_single": single["adherence"], **{FUNNEL[k]: v for k, v in funnel.items()},
            "frechet_single": single["frechet"], "frechet_two": two["frechet"]}


def snapshot_model(path) -> tuple:
    """(step, an mmdit_small with the snapshot's EMA weights, rounded through float16 as the shipped file is, and
    the run's TrainConfig as a dict)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = mmdit_small()
    model.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in state["ema"].items()})
    return state["step"], model.eval(), state["config"]


def model_at(rev: str) -> MMDiT:
    """The shipped MMDiT as of git revision `rev` (the model a retrain replaced)."""
    blob = subprocess.run(["git", "show", f"{rev}:data/mmdit.pt"], capture_output=True, check=True).stdout
    with tempfile.NamedTemporaryFile(suffix=".pt") as f:
        f.write(blob)
        f.flush()
        return load_model(f.name)


def learning_curve(run: Path, before: str = None) -> dict:
    """The mmdit_binding result: the curve over RUN/curve/snapshot-STEP.pt, then the shipped model's (and the one at
    git revision `before`'s) scores on N_FINAL captions per mode at each of CFG_FINAL, and its binding source."""
    settings = json.loads((run / "run.json").read_text())
    snapshots = sorted(run.glob("curve/snapshot-*.pt"), key=lambda p: int(re.findall(r"\d+", p.stem)[-1]))
    if not snapshots:
        raise FileNotFoundError(f"no curve/snapshot-STEP.pt in {run}: copy each snapshot.pt there as the run writes "
                                "it (the run overwrites it at every validation).")
    vae, judge, start = load_vae(), load_judge(), time.time()
    curve = {}
    for path in snapshots:
        step, model, config = snapshot_model(path)
        measured = scores(model, N_CURVE, 2.0, vae, judge)
        curve[f"step {step}"] = {"seeds": [settings["seed"]], "step": step, "samples": step * config["batch_size"],
                                 "metrics": {k: [v] for k, v in measured.items()}}
        print(f"step {step:>5}: " + ", ".join(f"{k} {v:.3f}" for k, v in measured.items()), flush=True)
    steps = list(curve)
    budget = {"scale": "reference", "steps": config["steps"], "batch_size": config["batch_size"], "lr": config["lr"],
              "seeds": [settings["seed"]], "n_eval": N_CURVE, "cfg_scale": 2.0, "sampling_steps": 25}
    result = new_result("mmdit_binding", CLAIM, ("adherence_two", steps[-1], steps[0]),
                        f"python -m course_utils.binding {run}", get_device(), budget, curve)
    models = {"shipped": load_model("mmdit")}
    if before:
        models["before"] = model_at(before)
    result["final"] = {"n_eval": N_FINAL, "before": before, "models": {}}
    for name, model in models.items():
        for cfg in CFG_FINAL:
            measured = scores(model, N_FINAL, cfg, vae, judge)
            result["final"]["models"].setdefault(name, {})[f"cfg {cfg:g}"] = measured
            print(f"{name}, CFG {cfg:g}, {N_FINAL} captions per mode: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in measured.items()), flush=True)
    result["binding_source"] = binding_source(models["shipped"], N_FINAL, 2.0, vae=vae, judge=judge)
    print(f"binding source, shipped model: {result['binding_source']}")
    result["seconds"], result["complete"] = round(time.time() - start, 1), True
    return result


def recipe_result(run: Path, n: int = N_FINAL) -> dict:
    """The mmdit_gpu_recipe result: a finished MMDiT retrain run (RUN/run.json, report.json, mmdit.pt) as it was
    made, its scores on n held-out captions per mode at each of CFG_FINAL (variants "cfg 2", "cfg 3"), and which of
    issue 22's aims it meets ("aims": per CFG, each adherence at least its RECIPE_AIMS; the run's seconds at most
    RECIPE_TRAIN_SECONDS)."""
    if not (run / "report.json").is_file():
        raise FileNotFoundError(f"no report.json in {run}: recipe_result takes the folder of a finished retrain run.")
    settings, report = (json.loads((run / f).read_text()) for f in ("run.json", "report.json"))
    if report["name"] != "mmdit":
        raise ValueError(f"{run} holds a {report['name']} run; the recipe result is the MMDiT's.")
    vae, judge, start = load_vae(), load_judge(), time.time()
    model = load_model(run / "mmdit.pt", get_device())
    variants = {}
    for cfg in CFG_FINAL:
        measured = scores(model, n, cfg, vae, judge)
        variants[f"cfg {cfg:g}"] = {"seeds": [report["seed"]], "metrics": {k: [v] for k, v in measured.items()}}
        print(f"CFG {cfg:g}, {n} captions per mode: " + ", ".join(f"{k} {v:.3f}" for k, v in measured.items()))
    budget = {"scale": "reference", "steps": report["steps"], "batch_size": report["batch_size"], "lr": report["lr"],
              "seeds": [report["seed"]], "n_eval": n, "sampling_steps": 25, "processes": report["processes"],
              "samples": report["steps"] * report["batch_size"], "train_seconds": report["seconds"]}
    scoring = f"python -m course_utils.binding {run} --recipe" + (f" --n {n}" if n != N_FINAL else "")
    command = f"{retrain_command(settings, report['processes'], run)} && {scoring}"
    device = f"{report['device']} ({report['gpu']})" if "gpu" in report else report["device"]
    result = new_result("mmdit_gpu_recipe", RECIPE_CLAIM, ("adherence_two", "cfg 3", "cfg 2"), command, device,
                        budget, variants)
    result["commit"] = report.get("commit", result["commit"])  # the commit that trained it
    result["aims"] = {**{cfg: {m: entry["metrics"][m][0] >= aim for m, aim in RECIPE_AIMS.items()}
                         for cfg, entry in variants.items()},
                      "train_seconds": report["seconds"] <= RECIPE_TRAIN_SECONDS}
    result["seconds"], result["complete"] = round(report["seconds"] + time.time() - start, 1), True
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description="The MMDiT binding learning curve: data/results/mmdit_binding.json; "
                                                 "with --recipe, a GPU recipe run: data/results/mmdit_gpu_recipe.json")
    parser.add_argument("run", type=Path, help="a retrain folder (with curve/snapshot-STEP.pt copies for the curve)")
    parser.add_argument("--before", default=None, help="git revision of the shipped model the run replaced")
    parser.add_argument("--recipe", action="store_true", help="record the finished run and score its model")
    parser.add_argument("--n", type=int, default=N_FINAL, help="with --recipe: captions per mode (default 500)")
    parser.add_argument("--save", type=Path, help="write the result to this file instead of shipping it into data/")
    args = parser.parse_args(argv)
    result = recipe_result(args.run, args.n) if args.recipe else learning_curve(args.run, args.before)
    if args.save:
        save_result(result, args.save)
        print(f"wrote {args.save}")
    else:
        print(ship_result(result))


if __name__ == "__main__":
    main()
