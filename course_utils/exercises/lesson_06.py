"""Lesson 06's exercises: what qk-norm holds down, what SD3's last block never reads, where a word of the shipped
MMDiT looks, mirrored captions, what tied text weights save, and a joint block's compute (patch size 1's cost)."""

from dataclasses import replace
from functools import cache, lru_cache

import torch
import torch.nn as nn

from ..checkpoint import load_model
from ..config import SEEDS
from ..data import COLOURS, Tokenizer, caption_for, relation_holds, render_shapes, to_float
from ..flow import sample_trajectory, time_grid
from ..latents import load_latents
from ..mmdit import JointAttentionMaps, MMDiTBlock, mmdit_small
from ..sd3_baselines import SharedBlock, in_context_small
from ..train import LESSON_RUN, train
from ..vae import load_vae
from .base import Wrong, call, choice, exercise


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def largest_logit(model, n: int = 64) -> float:
    """The largest attention logit q.k / sqrt(d) between tokens that may attend, over all blocks, on n validation
    latents noised to random times (fixed seeds)."""
    val = load_latents("val", verbose=False)
    gen = torch.Generator().manual_seed(0)
    t = torch.rand(n, generator=gen)
    noise, t_ = torch.randn(val.latents[:n].shape, generator=gen), t[:, None, None, None]
    x = (1 - t_) * noise + t_ * val.latents[:n]  # (n, 4, 8, 8) on the straight path from noise to data
    tokens, text, mask, y, angles, _ = model.encode(x, t, (val.ids[:n], val.mask[:n]))
    largest = -float("inf")
    for block, rope in zip(model.blocks, angles):
        x_in, c_in, _, _ = block.attention_inputs(tokens, text, y)
        q, k, _, keys = block.attn.qkv(x_in, c_in, mask, rope)  # (B, h, N + M, d) each, keys (B, N + M)
        logits = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5  # (B, h, N + M, N + M)
        largest = max(largest, logits.masked_fill(~keys[:, None, None, :], -float("inf")).max().item())
        tokens, text = block(tokens, text, y, mask, rope)
    return largest


@lru_cache(maxsize=1)
def logit_growth(steps: int = 30) -> dict:
    """{"with" / "without": (largest logit at init, after training, largest rise of the loss in one step)} for
    mmdit_small with and without qk-norm, trained `steps` steps of batch 32 at lr 3e-3 (seed 0)."""
    data, result = load_latents("train", verbose=False), {}
    for name, qk_norm in (("with", True), ("without", False)):
        torch.manual_seed(0)
        model = mmdit_small(qk_norm=qk_norm)
        before = largest_logit(model)
        history = train(model, data.latents, (data.ids, data.mask), desc=f"exercise 06.1: {name} qk-norm",
                        config=replace(LESSON_RUN, steps=steps, batch_size=32, lr=3e-3, warmup=3, seed=0))
        losses = torch.tensor([loss for _, loss in history.train_loss])
        result[name] = (before, largest_logit(model.eval()), (losses[1:] - losses[:-1]).max().item())
    return result


@exercise("06.1", "logits_grow_more", "qk-norm divides every query and key by its RMS, so |q.k| / sqrt(d) is at "
          "most sqrt(d) times two learned gains. Without it, nothing stops the projections from growing.")
def check_logits_grow_more(logits_grow_more):
    choice(logits_grow_more, ("with", "without"))
    result = logit_growth()
    growth = {name: after / before for name, (before, after, _) in result.items()}
    numbers = "; ".join(f"{name} qk-norm: largest logit {before:.1f} -> {after:.1f} ({growth[name]:.1f}x), largest "
                        f"one-step loss rise {jump:.2f}" for name, (before, after, jump) in result.items())
    if logits_grow_more != max(growth, key=growth.get):
        raise Wrong(f"the check trained both for 30 steps at lr 3e-3 (batch 32, seed 0): {numbers}. Which grew more?")
    return (f"{numbers}. The logits move first: once they are large the softmax is nearly one-hot, its gradients "
            f"spike, and the loss follows (SD3 added qk-norm when its largest runs diverged). One seed at a tiny "
            f"budget: a direction, not a law.")


@cache
def unread_by_gradient(overrides: tuple) -> int:
    """How many parameters of the last block of mmdit_small(**dict(overrides)) get an exactly zero gradient, with
    every weight random (no zero-init) and a random loss on the output: those the output never reads."""
    model = mmdit_small(**dict(overrides))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    cond = Tokenizer().encode(["a red circle above a blue square", "two small green diamonds"])
    out = model(torch.randn(2, 4, 8, 8, generator=gen), torch.rand(2, generator=gen), cond)  # (2, 4, 8, 8)
    (out * torch.randn(out.shape, generator=gen)).sum().backward()
    return sum(p.numel() if p.grad is None else (p.grad == 0).sum().item() for p in model.blocks[-1].parameters())


def unread_macs(config) -> int:
    """Multiply-accumulates per image the last block spends on what is never read (counted as MMDiT.gflops does):
    text queries, output projection and MLP on the M text tokens, their attention rows, 4 of 6 modulation chunks."""
    n, m, d = (config.input_size // config.patch_size) ** 2, 1 + config.max_len, config.dim
    return int((2 + 2 * config.mlp_ratio) * m * d * d) + 2 * m * (n + m) * d + 4 * d * d


@exercise("06.2", "unread_parameters", "follow the text tokens through the last block: the image queries read the "
          "text keys and values, and nothing reads the text stream's output. So the text queries (a third of qkv_c, "
          "and q_norm_c), proj_c, mlp_c, and the modulation_c rows that feed only them (4 of its 6 chunks) are unread.")
def check_unread_parameters(unread_parameters):
    for overrides in ((), (("dim", 64), ("heads", 2), ("mlp_ratio", 2.0), ("depth", 2)), (("qk_norm", False),)):
        model = mmdit_small(**dict(overrides))
        got, expected = call(unread_parameters, model), unread_by_gradient(overrides)
        if got != expected:
            name = f"mmdit_small({', '.join(f'{k}={v!r}' for k, v in overrides)})"
            mlp = count(model.blocks[-1].mlp_c)
            why = " That is the MLP alone: what else in the text stream feeds only it or the text output?" if (
                got == mlp) else ""
            raise Wrong(f"for {name} you counted {got!r}; a gradient measurement finds {expected:,} of the last "
                        f"block's {count(model.blocks[-1]):,} parameters that cannot change the output.{why}")
    model = mmdit_small()
    saved, macs = unread_by_gradient(()), unread_macs(model.config)
    return (f"the last block of mmdit_small never reads {saved:,} parameters ({saved / count(model):.1%} of the "
            f"model; its text MLP alone is {count(model.blocks[-1].mlp_c):,}) and spends {macs / 1e9:.4f} of its "
            f"{model.gflops():.4f} Gflops on them ({macs / 1e9 / model.gflops():.1%}). SD3's last block "
            f"(context_pre_only) drops the MLP, the output projection and their modulation; it still computes the "
            f"text queries.")


def patches_of(image: torch.Tensor, colour: str, patch: int = 8) -> torch.Tensor:
    """(h, w) bool: the patches of a decoded image (3, H, W) in [-1, 1] with at least 4 pixels of `colour`."""
    rgb = torch.tensor(COLOURS[colour]).float()[:, None, None]
    near = (((image + 1) * 127.5 - rgb).norm(dim=0) < 60).float()  # (H, W)
    return near.unflatten(0, (-1, patch)).unflatten(2, (-1, patch)).sum((1, 3)) >= 4


@exercise("06.3", "word_share", "maps.weights is (B, heads, N + M, N + M) with rows the queries; the joint sequence "
          "is [N patches; the begin token; the words], so word i is row N + 1 + i. Average over heads, take that row's "
          "first N columns as an (h, w) grid, and sum it over the patches the mask selects.")
def check_word_share(word_share):
    gen = torch.Generator().manual_seed(0)
    weights = torch.randn(2, 3, 16 + 13, 16 + 13, generator=gen).softmax(-1)
    maps = JointAttentionMaps(weights, (4, 4))
    for word in (0, 3, 7):
        patches = torch.rand(4, 4, generator=gen) < 0.4
        got = call(word_share, maps, word, patches)
        expected = [sum(weights[b, h, 16 + 1 + word, r * 4 + c].item() for h in range(3) for r in range(4)
                        for c in range(4) if patches[r, c]) / 3 for b in range(2)]
        if not isinstance(got, torch.Tensor) or got.shape != (2,):
            raise Wrong(f"word_share returned {getattr(got, 'shape', type(got).__name__)}; expected a tensor (B,) = "
                        f"(2,), one share per sample.")
        if not torch.allclose(got.double(), torch.tensor(expected, dtype=torch.double), atol=1e-5):
            raise Wrong(f"for word {word} on random attention maps (2 samples, 3 heads, a 4x4 grid) you returned "
                        f"{[round(v, 4) for v in got.tolist()]}; expected {[round(v, 4) for v in expected]}. Mind "
                        f"the begin token between the patches and the words, and average over the heads.")
    return "your share is right. " + objects_report(word_share)


def objects_report(word_share, caption: str = "a red circle above a blue square") -> str:
    """Where 'above' looks in each layer of the shipped MMDiT, at step 5 of 10 (CFG 2, seed 0): its share on the
    patches of the red and of the blue object that the sample ends up drawing."""
    model, tokenizer = load_model("mmdit").eval(), Tokenizer()
    trajectory = sample_trajectory(model, [caption], 10, 2.0, 0)  # (11, 1, C, 8, 8)
    image = load_vae().decode(trajectory[-1])[0]  # (3, 32, 32)
    masks = {colour: patches_of(image, colour) for colour in ("red", "blue")}
    masks["image"] = torch.ones(4, 4, dtype=torch.bool)
    shares = [[word_share(model.attention_maps(trajectory[5], time_grid(10)[5][None], tokenizer.encode([caption]),
                                               layer), 3, mask)[0].item() for mask in masks.values()]
              for layer in range(len(model.blocks))]
    best = max(range(len(shares)), key=lambda layer: min(shares[layer][:2]))
    table = "; ".join(f"layer {layer}: {red:.0%} and {blue:.0%} of its {image:.0%} on the image"
                      for layer, (red, blue, image) in enumerate(shares))
    return (f"The sample of '{caption}' (the explorer's run) draws red on {masks['red'].sum()} and blue on "
            f"{masks['blue'].sum()} of the 16 patches. At step 5, 'above' gives them: {table}. Spread evenly, each "
            f"would get its patches' fraction of the image share. Layer {best} reads both most: the relation word "
            f"gathers where each object is, which is what placing one above the other needs.")


INVERSE = {"above": "below", "below": "above", "to the left of": "to the right of", "to the right of": "to the left of"}


@exercise("06.4", "swap_caption", "name the second object first, then invert the relation: 'above' becomes "
          "'below', 'to the left of' 'to the right of'. caption_for(record) writes a record's caption, articles too.")
def check_swap_caption(swap_caption):
    records = render_shapes(300, seed=SEEDS["exercises"] + 64, mode="relation").records
    tokenizer = Tokenizer()
    for record in records:
        a, b = record["objects"]
        got = call(swap_caption, {**record, "objects": [dict(a), dict(b)]})
        expected = caption_for({**record, "relation": INVERSE[record["relation"]], "objects": [b, a]})
        if not isinstance(got, str):
            raise Wrong(f"swap_caption should return a caption string, got {type(got).__name__}.")
        tokenizer.words(got)  # an unknown word raises, naming the words there are
        if got != expected:
            raise Wrong(f"for '{caption_for(record)}' you wrote '{got}'; the same scene named from the second object "
                        f"is '{expected}'.")
        assert relation_holds(INVERSE[record["relation"]], b, a)
    mirrored, contradicting = caption_reading(render_shapes(100, seed=SEEDS["exercises"] + 65, mode="relation"))
    closer = "closer to" if mirrored < contradicting else "further from"
    return (f"all 300 right. The shipped MMDiT at t = 0.5 on 100 scenes: the mirrored caption moves its prediction by "
            f"{mirrored:.1%} of the caption's whole effect (caption against null caption), a caption with the relation "
            f"inverted, another scene, by {contradicting:.1%}. So the same scene in other words is {closer} the "
            f"original than a wrong scene: {'it reads the scene' if closer == 'closer to' else 'it reads word order'}.")


@torch.no_grad()
def caption_reading(scenes) -> tuple:
    """How far the shipped MMDiT's velocity at t = 0.5 moves, relative to |v(caption) - v(null)|, when each scene's
    caption is replaced by its mirror (the same scene) and by its relation inverted (another scene)."""
    model, tokenizer, records = load_model("mmdit").eval(), Tokenizer(), scenes.records
    x1 = load_vae().encode(to_float(scenes.images))  # (n, 4, 8, 8)
    t = torch.full((len(records),), 0.5)
    xt = 0.5 * torch.randn(x1.shape, generator=torch.Generator().manual_seed(0)) + 0.5 * x1
    mirrored = [caption_for({**r, "relation": INVERSE[r["relation"]], "objects": r["objects"][::-1]}) for r in records]
    inverted = [caption_for({**r, "relation": INVERSE[r["relation"]]}) for r in records]
    own, *others = [model(xt, t, tokenizer.encode(c)) for c in (scenes.captions, mirrored, inverted)]
    null = model(xt, t, tuple(z.expand(len(records), -1) for z in model.null_condition()))
    effect = (own - null).flatten(1).norm(dim=1)  # (n,)
    return tuple(((own - v).flatten(1).norm(dim=1) / effect).mean().item() for v in others)


def saving_by_count(dim: int, heads: int, mlp_ratio: float, qk_norm: bool) -> int:
    """Parameters of an MMDiT block minus those of the same block with its text weights tied to the image's."""
    return count(MMDiTBlock(dim, heads, mlp_ratio, qk_norm)) - count(SharedBlock(dim, heads, mlp_ratio, qk_norm))


TIED_CASES = ((128, 4, 4.0, True), (64, 2, 2.0, False), (96, 3, 4.0, True), (64, 8, 2.5, True))  # dim, heads, r, qk


@exercise("06.5", "tied_saving", "the text stream has its own qkv_c (D -> 3D), proj_c (D -> D), mlp_c (D -> rD -> D), "
          "modulation_c (D -> 6D) and, with qk-norm, q_norm_c and k_norm_c (one gain per head channel, D / heads "
          "each). Every Linear has a bias.")
def check_tied_saving(tied_saving):
    for dim, heads, ratio, qk_norm in TIED_CASES:
        got, expected = call(tied_saving, dim, heads, ratio, qk_norm), saving_by_count(dim, heads, ratio, qk_norm)
        if got != expected:
            raise Wrong(f"tied_saving({dim}, {heads}, {ratio}, {qk_norm}) = {got!r}; the MMDiTBlock has {expected:,} "
                        f"more parameters than the SharedBlock of the in-context DiT.")
    per_block, mmdit, tied = saving_by_count(128, 4, 4.0, True), mmdit_small(), in_context_small()
    matched = min(range(64, 129, 16), key=lambda dim: abs(count(mmdit_small(dim=dim)) - count(tied)))
    return (f"an mmdit_small block carries {per_block:,} more parameters than a tied one, {4 * per_block:,} over its 4 "
            f"blocks: {count(mmdit):,} against the in-context DiT's {count(tied):,}, for the same Gflops. At width "
            f"{matched} an MMDiT has {count(mmdit_small(dim=matched)):,}: train mmdit_small(dim={matched}) to compare "
            f"them at equal parameters.")


MACS_CASES = ({}, {"patch_size": 1}, {"dim": 64, "mlp_ratio": 2.0}, {"patch_size": 1, "max_len": 6})


@exercise("06.6", "joint_block_macs", "each stream pays its own projections (q, k, v and output: 4 T D^2 for T tokens) "
          "and MLP (2 r T D^2); the joint attention's scores and weighted sum run over all N + M tokens (2 (N + M)^2 "
          "D); each stream's modulation is one D -> 6D layer per sample (6 D^2).")
def check_joint_block_macs(joint_block_macs):
    for overrides in MACS_CASES:
        model = mmdit_small(**overrides)
        cfg = model.config
        n, m = (cfg.input_size // cfg.patch_size) ** 2, 1 + cfg.max_len
        got = call(joint_block_macs, n, m, cfg.dim, cfg.mlp_ratio)
        expected = model.gflops() * 1e9 / cfg.depth
        if isinstance(got, bool) or not isinstance(got, (int, float)) or abs(got - expected) > 0.5:
            raise Wrong(f"joint_block_macs({n}, {m}, {cfg.dim}, {cfg.mlp_ratio}) = {got!r}; mmdit_small"
                        f"({', '.join(f'{k}={v!r}' for k, v in overrides.items())}).gflops() counts {expected:,.0f} "
                        f"multiply-accumulates per block.")
    small, fine = mmdit_small(), mmdit_small(patch_size=1)
    return (f"patch size 1 (64 image tokens instead of 16) costs {fine.gflops():.3f} against {small.gflops():.3f} "
            f"Gflops per image: {fine.gflops() / small.gflops():.2f}x, less than 4x because the 13 text tokens cost "
            f"the same, for nearly the same parameters ({count(fine):,} against {count(small):,}). The blocks are "
            f"nearly all of a training step, so a step costs about that much more.")
