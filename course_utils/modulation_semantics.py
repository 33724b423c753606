"""What modulation encodes: the `modulation_semantics` experiment (the lecture's "brownness/fluffiness" dimensions;
the DiT paper's adaLN, Peebles & Xie 2023).

For captions that differ in one word (red/blue, circle/square, small/large), rank the residual channels d by how much
the word moves their adaLN shift and scale (summed over both branches of every block and the final layer), check that
the ranking holds across times and caption contexts (top-k overlap against the chance level k/D), then intervene:
sample caption A with the top-k channels' shift, scale and gate taken from caption B, and ask the judge whether the
sample follows B, against k random channels (the control) and the whole caption B (the ceiling):

    python -m course_utils.modulation_semantics --scale reference   # -> data/results/modulation_semantics.json
"""

import argparse
import time

import torch
from torch import nn

from .checkpoint import load_model
from .config import FAST, SEEDS
from .data import Tokenizer, caption_for, render_shapes
from .flow import caption_batch, euler_sample, evaluating
from .judge import read_scenes, scene_objects
from .results import difference, new_result, ship_result, table, verdict
from .stats import mean_interval

PAIRS = {"colour": ("red", "blue"), "shape": ("circle", "square"), "size": ("small", "large")}  # attribute: (A, B)
TIMES = (0.04, 0.25, 0.5, 0.75, 0.96)  # where along the path the ranking is read
SCALES = {"fast": {"seeds": (0,), "n_prompts": 8, "n_contexts": 8},  # n_prompts per word pair, condition and seed
          "lesson": {"seeds": (0, 1), "n_prompts": 100, "n_contexts": 32},
          "reference": {"seeds": (0, 1, 2, 3, 4), "n_prompts": 200, "n_contexts": 64}}
K, STEPS, CFG_SCALE, MODEL = 16, 25, 2.0, "dit"
CONDITIONS = ("caption_a", "random_k", "top_k", "caption_b")
CONTEXT_SEED = SEEDS["examples"] + 5_000  # the ranking's caption contexts, apart from the evaluation's prompts
CLAIM = ("Modulation highlights meaningful dimensions: moving the adaLN modulation of the k=16 residual channels that "
         "a word changes most (of D=128) from caption A to caption B makes the sample follow B more often than moving "
         "16 random channels (the lecture's 'brownness/fluffiness'; red/blue, circle/square, small/large).")
KEY = ("follows_b", "top_k", "random_k")


def modulations(model) -> list:
    """Every Modulation module of an adaLN DiT, in the order the data flows: the blocks', then the final layer's."""
    if not getattr(model, "modulated", False):
        raise ValueError("modulation semantics reads an adaLN DiT (conditioning 'adaln' or 'adaln_zero').")
    return [b.modulation for b in model.blocks] + [model.final_layer.norm.modulation]


def word_captions(records: list, attribute: str) -> tuple:
    """The single-object records' captions with the attribute set to the pair's word A, and to word B."""
    if attribute not in PAIRS:
        raise ValueError(f"attribute must be one of {tuple(PAIRS)}, got {attribute!r}.")
    return tuple([caption_for({**r, "objects": [{**r["objects"][0], attribute: w}]}) for r in records]
                 for w in PAIRS[attribute])


@torch.no_grad()
def channel_changes(model, captions_a: list, captions_b: list, times=TIMES) -> torch.Tensor:
    """|shift_B - shift_A| + |scale_B - scale_A| per residual channel, summed over the branches of every modulated
    layer: (contexts, times, D), one context per caption pair."""
    device = next(model.parameters()).device
    tok = Tokenizer(model.config.max_len)
    conds = [tuple(x.to(device) for x in tok.encode(c)) for c in (captions_a, captions_b)]
    out = []
    for t in times:
        tt = torch.full((len(captions_a),), float(t), device=device)
        mods_a, mods_b = ([m(model.condition(tt, cond)) for m in modulations(model)] for cond in conds)
        change = sum((ma.shift - mb.shift).abs() + (ma.scale - mb.scale).abs()
                     for la, lb in zip(mods_a, mods_b) for ma, mb in zip(la, lb))  # (contexts, D)
        out.append(change)
    return torch.stack(out, 1).cpu()  # (contexts, times, D)


def rank_channels(changes: torch.Tensor) -> torch.Tensor:
    """Channels from most to least changed, averaged over contexts and times: changes (contexts, times, D) -> (D,)."""
    return changes.mean((0, 1)).argsort(descending=True)


def check_k(k, dim: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= dim:
        raise ValueError(f"k must be an integer number of channels from 0 to D={dim}, got {k!r}.")
    return k


def channel_mask(channels, dim: int) -> torch.Tensor:
    """A (D,) bool mask, True on the given channel indices."""
    mask = torch.zeros(dim, dtype=torch.bool)
    mask[torch.as_tensor(list(channels), dtype=torch.long)] = True
    return mask


def topk_overlap(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    """|top-k of a and top-k of b| / k for two change vectors (D,)."""
    check_k(k, a.shape[-1])
    return len(set(a.topk(k).indices.tolist()) & set(b.topk(k).indices.tolist())) / k


def consistency(changes: torch.Tensor, k: int = K) -> dict:
    """How stable the top-k channels are, one value per context, as mean and 95% interval over contexts:
    "times": the top-k at one time against the top-k at another (all pairs of times), same context;
    "contexts": the top-k of one context against the top-k of the mean of the other contexts, same time;
    "chance": k / D, the overlap of random sets."""
    n, n_t, dim = changes.shape
    times, contexts = [], []
    for i in range(n):
        pairs = [(s, u) for s in range(n_t) for u in range(s + 1, n_t)]
        times.append(sum(topk_overlap(changes[i, s], changes[i, u], k) for s, u in pairs) / len(pairs))
        rest = torch.cat([changes[:i], changes[i + 1:]]).mean(0)  # (times, D)
        contexts.append(sum(topk_overlap(changes[i, s], rest[s], k) for s in range(n_t)) / n_t)
    return {"times": list(mean_interval(times)[:3]), "contexts": list(mean_interval(contexts)[:3]),
            "chance": k / dim, "n_contexts": n}


class Transplant(nn.Module):
    """The model, sampling caption A, with the modulation of the chosen channels taken from caption B.

    Forward hooks on every Modulation module replace channels[d] (a (D,) bool mask) of shift, scale and gate of every
    branch by the module's output on c_B = time embedding + pooled caption B (computed as model.condition computes
    it). Only the caption-A pass is changed: CFG's null pass runs the plain model."""

    def __init__(self, model, cond_a: tuple, cond_b: tuple, channels: torch.Tensor):
        super().__init__()
        self.model, self.cond_a, self.cond_b, self.channels, self.c_b = model, cond_a, cond_b, channels, None

    def _hook(self, module, inputs, output):
        if self.c_b is None:
            return output
        new = module.forward(self.c_b)  # .forward: no hooks, no recursion
        mix = lambda a, b: None if a is None else torch.where(self.channels, b, a)  # noqa: E731
        return tuple(type(o)(*(mix(a, b) for a, b in zip(o, n))) for o, n in zip(output, new))

    def forward(self, x, t, cond):
        if cond is not self.cond_a:  # CFG's null pass
            return self.model(x, t, cond)
        self.c_b = self.model.condition(t, self.cond_b)  # (B, D), as the model computes c for caption B
        handles = [m.register_forward_hook(self._hook) for m in modulations(self.model)]
        try:
            return self.model(x, t, cond)
        finally:
            for h in handles:
                h.remove()
            self.c_b = None


@torch.no_grad()
def sample_transplant(model, captions_a: list, captions_b: list, channels: torch.Tensor, seed: int = 0,
                      steps: int = STEPS, cfg_scale: float = CFG_SCALE) -> torch.Tensor:
    """Latents (B, C, s, s) of captions A with the modulation of `channels` ((D,) bool) from captions B; Euler with CFG
    against model.null_condition(), from the noise flow.caption_batch draws for `seed`."""
    device = next(model.parameters()).device
    noise, cond_a = caption_batch(model, captions_a, seed)
    cond_b = Tokenizer(model.config.max_len).encode(captions_b)
    cond_a, cond_b = (tuple(x.to(device) for x in cond) for cond in (cond_a, cond_b))
    wrapped = Transplant(model, cond_a, cond_b, channels.to(device))
    with evaluating(model):
        return euler_sample(wrapped, noise.to(device), cond_a, steps, model.null_condition(), cfg_scale)


def follows(scenes: dict, attribute: str, word: str) -> float:
    """Fraction of images in which the judge reads exactly one object, with `word` as its attribute."""
    n = len(scenes["present"])
    return sum(len(o := scene_objects(scenes, i)) == 1 and o[0][attribute] == word for i in range(n)) / n


def run_modulation_semantics(scale: str = "lesson", k: int = K, model=None, device="cpu") -> dict:
    """Rank, check consistency and intervene for every word pair; returns the result in the results schema: variants
    CONDITIONS, seeds = prompt sets, metrics "follows_b" (all pairs), "follows_b_<attribute>" and "follows_a"."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {tuple(SCALES)}, got {scale!r}.")
    budget = SCALES["fast" if scale == "lesson" and FAST else scale]
    model = model or load_model(MODEL, device)
    dim = model.config.dim
    check_k(k, dim)
    vae, judge = load_model("vae", device), load_model("judge", device)
    start = time.time()
    result = new_result(
        "modulation_semantics", CLAIM, KEY, f"python -m course_utils.modulation_semantics --scale {scale}", device,
        {"scale": scale, "steps": 0, "batch_size": budget["n_prompts"], "seeds": list(budget["seeds"]),
         "n_eval": budget["n_prompts"] * len(PAIRS), "n_prompts_per_pair": budget["n_prompts"],
         "n_contexts": budget["n_contexts"], "times": list(TIMES), "k": k, "dim": dim, "model": MODEL,
         "cfg_scale": CFG_SCALE, "sampling_steps": STEPS, "pairs": PAIRS,
         "note": "no training: the shipped DiT; one prompt set and random-k draw per pair and seed"},
        {c: {"seeds": [], "metrics": {}} for c in CONDITIONS})
    result["channels"], result["consistency"] = {}, {}
    contexts = render_shapes(budget["n_contexts"], seed=CONTEXT_SEED, mode="single").records
    ranking = {}
    for attribute in PAIRS:
        changes = channel_changes(model, *word_captions(contexts, attribute))
        ranking[attribute] = rank_channels(changes)
        result["channels"][attribute] = ranking[attribute][:k].tolist()
        result["consistency"][attribute] = consistency(changes, k)
    for seed in budget["seeds"]:
        prompts = render_shapes(budget["n_prompts"], seed=SEEDS["eval_prompts"] + seed, mode="single").records
        scores = {c: {} for c in CONDITIONS}
        for p, (attribute, (word_a, word_b)) in enumerate(PAIRS.items()):
            caps_a, caps_b = word_captions(prompts, attribute)
            draw = torch.randperm(dim, generator=torch.Generator().manual_seed(1000 * seed + p))[:k]
            chosen = {"caption_a": [], "random_k": draw, "top_k": ranking[attribute][:k], "caption_b": range(dim)}
            for condition, idx in chosen.items():
                mask = channel_mask(idx, dim)
                latents = sample_transplant(model, caps_a, caps_b, mask, seed)
                scenes = read_scenes(judge, vae.decode(latents).cpu())
                scores[condition][f"follows_b_{attribute}"] = follows(scenes, attribute, word_b)
                scores[condition][f"follows_a_{attribute}"] = follows(scenes, attribute, word_a)
        for condition, measured in scores.items():
            measured["follows_b"] = sum(measured[f"follows_b_{a}"] for a in PAIRS) / len(PAIRS)
            measured["follows_a"] = sum(measured[f"follows_a_{a}"] for a in PAIRS) / len(PAIRS)
            entry = result["variants"][condition]
            entry["seeds"].append(seed)
            for metric, value in measured.items():
                entry["metrics"].setdefault(metric, []).append(value)
    result["seconds"], result["complete"] = time.time() - start, True
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m course_utils.modulation_semantics",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=tuple(SCALES), default="reference")
    args = parser.parse_args(argv)
    result = run_modulation_semantics(args.scale)
    for attribute, c in result["consistency"].items():
        print(f"{attribute}: top-{K} channels {result['channels'][attribute]}; overlap across times {c['times']}, "
              f"across contexts {c['contexts']}, chance {c['chance']:.3f}")
    print(table(result, ("follows_b", "follows_a") + tuple(f"follows_b_{a}" for a in PAIRS)))
    print(f"{KEY[1]} - {KEY[2]} ({KEY[0]}): {difference(result)}; {verdict(result)}")
    if args.scale == "reference":
        print(ship_result(result))


if __name__ == "__main__":
    main()
