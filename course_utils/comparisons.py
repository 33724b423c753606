"""What the lessons compare: each claim's variants, budgets at two scales and measurements (DESIGN, "Evidence: two
scales"). `course_utils.experiments` runs them.

    get_comparison("conditioning").variants     # {name: builder of a fresh model}
    scale_of(comparison, "lesson")               # the budget a notebook runs (the FAST one in FAST mode)
"""

from dataclasses import dataclass, field, replace
from functools import partial

from .config import FAST, SEEDS
from .data import render_shapes
from .dit import CONDITIONINGS, dit_small, dit_tiny
from .flow import generate
from .judge import read_scenes
from .latents import SPLITS
from .metrics import consistency_by_distance, evaluate, frequency_errors, stripe_energy
from .mmdit import mmdit_small
from .rope import MixedRoPE, off_axis_degrees
from .scaling import SCALING_SIZES, scaling_variants
from .sd3_baselines import cross_small, in_context_small
from .train import LESSON_RUN, TrainConfig
from .unet import unet_small

SCALES = ("fast", "lesson", "reference")
INDUCTIVE_BIAS_SIZES = {"1k": 1_000, "5k": 5_000, "50k": 50_000}  # variant suffix -> training latents
NO_DOWNSAMPLING_WIDTH = 88  # the downsampling control's width: its Gflops match the 64 px U-Net's within 2%
ARTIFACT_SIZE, ARTIFACT_CFG = 64, 2.0  # rope_artifacts samples at 64 px (trained at 32) with CFG 2, as lesson 05 does


@dataclass(frozen=True)
class Scale:
    """A budget: AdamW steps of batch_size samples, for each seed; n_eval captions per evaluated mode and seed;
    n_val held-out latents for the validation loss (8 validations a run)."""

    steps: int
    seeds: tuple
    batch_size: int = 64
    n_eval: int = 300
    n_val: int = 1000


@dataclass(frozen=True)
class Comparison:
    """Named variants (name -> a builder of a fresh model) trained and measured alike.

    key: (metric, a, b), the paired difference a - b that carries the claim; modes: evaluate's caption modes;
    run: the training settings every variant shares (steps, batch and seed come from the scale); probes: names of
    extra measurements (PROBES); data: the latent splits (latents.SPLITS) it trains and validates on; train_sizes:
    {variant: n} for variants that train on only the first n latents of the training split (default: all of them);
    borrows: {variant: comparison} for variants whose runs are another comparison's runs of that variant (the same
    builder, data, training, probes and budget, which `lends` checks), taken from its result instead of trained again.
    """

    name: str
    claim: str
    variants: dict
    key: tuple
    lesson: Scale
    reference: Scale
    fast: Scale = Scale(steps=12, seeds=(0, 1), batch_size=32, n_eval=16, n_val=128)
    modes: tuple = ("single", "relation")
    cfg_scale: float = 3.0
    run: TrainConfig = LESSON_RUN
    probes: tuple = ()
    notes: dict = field(default_factory=dict)
    data: tuple = ("train", "val")
    train_sizes: dict = field(default_factory=dict)
    borrows: dict = field(default_factory=dict)

    def __post_init__(self):
        available = SPLITS[self.data[0]][0]
        for variant, n in self.train_sizes.items():
            if variant not in self.variants:
                raise ValueError(f"train_sizes of {self.name!r} names {variant!r}, which is not one of its variants "
                                 f"({', '.join(self.variants)}).")
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= available:
                raise ValueError(f"train_sizes[{variant!r}] of {self.name!r} must be a whole number of training "
                                 f"latents from 1 to {available:,} (the {self.data[0]!r} split), got {n!r}.")


def _frequency_probe(model, context: dict) -> dict:
    latents, cond = context["val"]
    return frequency_errors(model, latents, cond)


def _twins_probe(model, context: dict) -> dict:
    """n_eval unconditional samples (the null caption) of a model trained on twins, read by the judge: the share with
    two matching objects, the share with exactly two objects, and per distance (metrics.CELL_DISTANCES) the counts
    consistent_D of matching pairs among found_D pairs found that far apart."""
    n = context["n_eval"]
    images = generate(model, [""] * n, context["vae"], seed=context["seed"])  # (n, 3, 64, 64)
    counts = consistency_by_distance(read_scenes(context["judge"], images))
    found = sum(total for _, total in counts.values())
    out = {"pair_consistency": sum(good for good, _ in counts.values()) / n, "two_objects": found / n}
    for label, (good, total) in counts.items():
        out[f"consistent_{label}"], out[f"found_{label}"] = good, total
    return out


def _rope_artifacts_probe(model, context: dict) -> dict:
    """n_eval single-object captions sampled at ARTIFACT_SIZE px (16x16 latents, an 8x8 grid of patch tokens where
    training saw 4x4) with CFG ARTIFACT_CFG, as `evaluate` samples them: the mean stripe_energy of the samples and of
    evaluate's real images (n_eval real 64 px single-object images), their ratio ("how many times the axis-aligned
    structure of real images"), the adherence and Frechet distance at that size, and how far the rotary frequency
    vectors point from the image axes (rope.off_axis_degrees: the mean, plain and weighted by each vector's length;
    0 for axial RoPE by construction)."""
    n, seed = context["n_eval"], context["seed"]
    scored = evaluate(model, n=n, mode="single", cfg_scale=ARTIFACT_CFG, seed=seed, size=ARTIFACT_SIZE,
                      vae=context["vae"], judge=context["judge"])
    real = render_shapes(n, seed=SEEDS["eval_real"] + seed, size=ARTIFACT_SIZE, mode="single").images
    fake, true = stripe_energy(scored["images"]).mean().item(), stripe_energy(real).mean().item()
    off_axis = off_axis_weighted = 0.0
    if isinstance(getattr(model, "rope", None), MixedRoPE):
        freqs = model.rope.freqs.detach()  # (layers, heads, pairs, 2)
        angles, lengths = off_axis_degrees(freqs), freqs.norm(dim=-1)
        off_axis, off_axis_weighted = angles.mean().item(), ((angles * lengths).sum() / lengths.sum()).item()
    return {"stripe_ratio": fake / true, "stripe_energy": fake, "stripe_energy_real": true,
            "adherence_64": scored["adherence"], "frechet_64": scored["frechet"],
            "off_axis": off_axis, "off_axis_weighted": off_axis_weighted}


# name -> (model, {"val": (latents, cond), "vae", "judge", "n_eval", "seed"}) -> {metric: value}
PROBES = {"frequency_errors": _frequency_probe, "twins_by_distance": _twins_probe,
          "rope_artifacts": _rope_artifacts_probe}


# What long_range and downsampling share: 64 px twins (16x16 latents) learned unconditionally, read by the twins
# probe, at one reference budget, with the U-Net without attention as one side of each (downsampling borrows its runs).
# Reference budget: two 1-thread processes side by side on 2 CPU cores trained at 2.7 (U-Net) and 2.1 (DiT) steps of
# batch 64 a second: 3 seeds x 3,000 steps of the three models, 500 samples each, took 1.8 hours there; seeds 3 and 4
# were added later (1.7 hours more), since 3 left downsampling's interval reaching zero (long_range's pilot: 4.7%
# consistent pairs after 500 steps, 18.7% after 2,000)
DIT_CONDITIONINGS = {name: partial(dit_small, name) for name in CONDITIONINGS}  # conditioning's four variants
TWINS_UNET = partial(unet_small, attention=False, input_size=16)
TWINS_SETUP = dict(reference=Scale(steps=3000, seeds=(0, 1, 2, 3, 4), n_eval=500), modes=(), cfg_scale=1.0,
                   run=replace(LESSON_RUN, cfg_dropout=1.0), probes=("twins_by_distance",),
                   data=("twins64_train", "twins64_val"))


COMPARISONS = {
    "conditioning": Comparison(
        name="conditioning",
        claim="Modulation beats putting the condition in the sequence: adaLN-Zero trains to a lower validation "
              "loss than in-context conditioning at an equal budget (DiT paper, Figure 5).",
        variants=DIT_CONDITIONINGS,
        key=("val_loss", "adaln_zero", "in_context"),
        lesson=Scale(steps=400, seeds=(0, 1), n_eval=200),
        # the reference, 20 runs x 2,000 steps and 500 samples per mode each: 69 minutes as two one-thread processes
        # on 2 cores
        reference=Scale(steps=2000, seeds=(0, 1, 2, 3, 4), n_eval=500),
        notes={"model": "DiT width 128, depth 6, 4 heads, patch 2 on 8x8 latents; each variant uses its own "
                        "mechanism in the final layer (adaLN for the modulated ones, LayerNorm for the others)"},
    ),
    "conditioning_long": Comparison(
        name="conditioning_long",
        claim="Gates that start at zero pay off with training: adaLN-Zero trains to a lower validation loss than "
              "plain adaLN (DiT paper, Figure 5), given twice the steps of the conditioning reference.",
        variants={name: DIT_CONDITIONINGS[name] for name in ("adaln", "adaln_zero")},
        key=("val_loss", "adaln_zero", "adaln"),
        lesson=Scale(steps=800, seeds=(0, 1), n_eval=200),
        # the reference, 10 runs x 4,000 steps and 500 samples per mode each: 53 minutes as two one-thread processes
        # on 2 cores. The learning rate is constant after warmup, so its first 2,000 steps are conditioning's runs.
        reference=Scale(steps=4000, seeds=(0, 1, 2, 3, 4), n_eval=500),
        notes={"model": "as in conditioning: the same builders, data, training settings and seeds, for twice the "
                        "steps of its reference"},
    ),
    "skip_connections": Comparison(
        name="skip_connections",
        claim="Skip connections carry detail across the U-Net: without them the one-step estimate's high-frequency "
              "error (what the 2x2 block means miss) is higher at an equal budget.",
        variants={"with_skips": unet_small, "without_skips": partial(unet_small, skip=False)},
        key=("high_freq_error", "with_skips", "without_skips"),
        lesson=Scale(steps=600, seeds=(0, 1), n_eval=200),
        # the reference, 6 runs x 3,000 steps and 500 samples each: 23 minutes as two one-thread processes on 2 cores
        reference=Scale(steps=3000, seeds=(0, 1, 2), n_eval=500),
        modes=("single",),
        cfg_scale=2.0,
        run=replace(LESSON_RUN, lr=2e-3),
        probes=("frequency_errors",),
        notes={"model": "unet_small: widths 32, 64, 96 on 8 -> 4 -> 2, attention at 2x2; the variants differ "
                        "only in the skip concatenations (so the decoder's first convolutions are narrower without)",
               "probe": "frequency_errors at t = 0.7 on the held-out latents, fixed noise"},
    ),
    "sd3_comparison": Comparison(
        name="sd3_comparison",
        claim="Separate weights per modality help: the MMDiT trains to a lower validation loss than an in-context "
              "DiT with the same text encoder, modulation, RoPE, width, depth and budget (SD3 paper, Figure 4).",
        variants={"in_context": in_context_small, "cross_attention": cross_small, "mmdit": mmdit_small},
        key=("val_loss", "mmdit", "in_context"),
        lesson=Scale(steps=300, seeds=(0, 1), n_eval=200),
        # the reference, 15 runs x 1,500 steps and 500 samples per mode each: 55 minutes as two one-thread processes
        # on 2 cores
        reference=Scale(steps=1500, seeds=(0, 1, 2, 3, 4), n_eval=500),
        notes={"model": "width 128, depth 4, 4 heads, patch 2, a 2-layer text encoder, adaLN-Zero from time + "
                        "pooled text, 2D axial RoPE and qk-norm in all three (course_utils.sd3_baselines)"},
    ),
    "long_range": Comparison(
        name="long_range",
        claim="Global attention keeps distant parts of an image consistent where convolutions struggle: a DiT draws "
              "two identical objects (unprompted) more often than a U-Net without attention of the same size and "
              "compute, the more so the farther apart they are (the lecture's U-Net against DiT).",
        variants={"unet": TWINS_UNET, "dit": partial(dit_small, input_size=16)},
        key=("pair_consistency", "dit", "unet"),
        # a pilot (seed 0, 300 samples) drew two matching objects in 4.7% (U-Net) and 3.3% (DiT) of samples after 500
        # steps, 18.7% and 20.3% after 2,000: consistency is learned late, so the reference runs 6x the lesson's steps
        lesson=Scale(steps=500, seeds=(0, 1), n_eval=300),
        **TWINS_SETUP,
        notes={"model": "64 px twins (two identical objects at any two cells), 16x16 latents, trained "
                        "unconditionally (every caption is the null caption); unet_small without attention (2.10 M "
                        "parameters, 0.073 Gflops) against dit_small at patch 2, 64 tokens (1.97 M, 0.077 Gflops)",
               "probe": "n_eval unconditional samples per seed, read by the judge; consistency by the distance "
                        "between the two objects found, in grid cells (a cell is 5.3 latent pixels)"},
    ),
    "downsampling": Comparison(
        name="downsampling",
        claim="Downsampling buys global context: on 16x16 latents of unprompted twins, a U-Net whose bottleneck sees "
              "the whole latent draws two matching objects more often than a control of the same compute that never "
              "downsamples, whose convolutions reach 6 latent pixels to each side, less than the 10.7 between "
              "objects two grid cells apart (the lecture's U-Net encoder).",
        variants={"unet": TWINS_UNET,
                  "no_downsampling": partial(unet_small, channels=(NO_DOWNSAMPLING_WIDTH,), blocks=0,
                                             attention=False, input_size=16)},
        key=("pair_consistency", "unet", "no_downsampling"),
        # the data, training and probe of long_range, so its U-Net is this comparison's; the lesson's budget is a
        # demo (long_range's pilot: 4.7% consistent pairs after 500 steps, 18.7% after 2,000), the reference decides
        lesson=Scale(steps=300, seeds=(0, 1), n_eval=200),
        **TWINS_SETUP,
        borrows={"unet": "long_range"},
        notes={"model": "64 px twins, 16x16 latents, trained unconditionally; unet_small without attention (16 -> 8 "
                        "-> 4, 2.10 M parameters, 0.073 Gflops) against one level of width 88 and no residual blocks "
                        "but the two in the middle: 6 3x3 convolutions in a row, a field of 13 latent pixels (0.92 M "
                        "parameters, 0.074 Gflops: at one resolution, the U-Net's parameters, at width 144, would cost "
                        "2.7x its compute). Both normalise with GroupNorm, whose statistics span the whole map",
               "probe": "as long_range: n_eval unconditional samples per seed, read by the judge; consistency by the "
                        "distance between the two objects, in grid cells (a cell is 5.3 latent pixels)"},
    ),
    "inductive_bias": Comparison(
        name="inductive_bias",
        claim="Convolutions' local bias helps with little data; transformers catch up with more: trained on the first "
              "1,000 training latents, a U-Net reaches a lower validation loss than a DiT of matched parameters and "
              "compute; on 5,000 and 50,000 the gap shrinks (the lecture's U-Net against DiT).",
        variants={f"{arch}_{size}": build for size in INDUCTIVE_BIAS_SIZES
                  for arch, build in (("unet", unet_small), ("dit", dit_small))},
        key=("val_loss", "unet_1k", "dit_1k"),
        # 20 timed steps of batch 64 took 0.15 s (U-Net) and 0.18 s (DiT) each on one thread of a CPU busy with another
        # training run: 12 runs of 300 steps take at most about 10 minutes there, less on 2 free cores
        lesson=Scale(steps=300, seeds=(0, 1), n_eval=100),
        # the reference, 18 runs x 1,500 steps and 500 samples each: 34 minutes as two one-thread processes on 2 cores
        reference=Scale(steps=1500, seeds=(0, 1, 2), n_eval=500),
        modes=("single",),
        cfg_scale=2.0,
        train_sizes={f"{arch}_{size}": n for size, n in INDUCTIVE_BIAS_SIZES.items() for arch in ("unet", "dit")},
        notes={"model": "unet_small (widths 32, 64, 96 on 8 -> 4 -> 2, attention only at 2x2; 2.14 M parameters, "
                        "0.0185 Gflops) against dit_small (adaLN-Zero, width 128, depth 6, patch 2, 16 tokens; "
                        "1.97 M, 0.0197 Gflops): the variants differ in the architecture and the number of training "
                        "latents only",
               "data": "the first 1,000, 5,000 or 50,000 latents of the train split; the same validation latents "
                       "for all. At the lesson's 300 steps of batch 64 a 1k variant sees each latent about 19 times "
                       "(96 at the reference's 1,500): it can overfit, which is what a built-in bias should resist"},
    ),
    "rope_artifacts": Comparison(
        name="rope_artifacts",
        claim="Mixed RoPE avoids the artifacts of axis segregation: sampled at 64 px, twice the side it was trained "
              "at, a DiT with axial RoPE draws more axis-aligned structure (stripe energy, relative to real images) "
              "than the same DiT with mixed RoPE (the lecture, after Heo et al., 2024).",
        variants={pos: partial(dit_tiny, pos=pos) for pos in ("rope_axial", "rope_mixed")},
        # results.verdict reads a metric outside LOWER_IS_BETTER as "a is better when higher": "reproduced" here means
        # that the axial samples carry more stripe energy than the mixed ones, which is the claim
        key=("stripe_ratio", "rope_axial", "rope_mixed"),
        # trained as lesson 05's section 6 trains them, at 500 steps instead of its 1,000 so that the lesson fits:
        # 20 timed steps of batch 64 took 0.26 s each on one thread of a CPU busy with another training run (about
        # 0.1 s on 2 free cores), 50 samples at 64 px 6.4 s. 4 runs x 500 steps and 200 samples each: about 4 to 5
        # minutes on 2 free cores; the reference, 10 runs x 2,500 steps and 500 samples each: 29 minutes as two
        # one-thread processes on 2 cores. Seeds 5-9 were added later, with the learned directions measured (every run
        # again, since the probe grew; 106 minutes on a slower machine): 5 seeds had left the key inconclusive
        lesson=Scale(steps=500, seeds=(0, 1), n_eval=200),
        reference=Scale(steps=2500, seeds=tuple(range(10)), n_eval=500),
        modes=(),
        cfg_scale=ARTIFACT_CFG,
        probes=("rope_artifacts",),
        notes={"model": "dit_tiny (adaLN-Zero, width 128, depth 4, 4 heads, patch 2) trained on 8x8 latents (32 px); "
                        "the variants differ only in pos (mixed RoPE learns its frequency vectors: 512 parameters "
                        "more)",
               "probe": "n_eval single-object captions per seed sampled at 16x16 latents (64 px) with CFG 2; "
                        "stripe_energy (metrics.stripe_energy: the share of non-DC spectral power on the kx = 0 and "
                        "ky = 0 axes) of the samples, of as many real 64 px images (stripe_energy_real) and their "
                        "ratio (stripe_ratio); adherence_64 and frechet_64 from the same samples; off_axis and "
                        "off_axis_weighted: the rotary frequency vectors' mean angle to the nearest image axis, in "
                        "degrees (0 for axial RoPE)"},
    ),
    "scaling": Comparison(
        name="scaling",
        claim="Gflops, not parameters, buy quality (DiT paper, section 5): across a grid of 3 model sizes x patches "
              "4, 2 and 1, quality tracks Gflops, and at the same width and depth (nearly the same parameters) the "
              "smaller patch, with 16x the tokens and about 13x the Gflops, trains to a lower validation loss.",
        variants=scaling_variants(),
        # The middle size at patch 1 (64 tokens) against patch 4 (4 tokens): the paper's "same model, smaller patch",
        # at the largest compute ratio one size offers (patch 1 has 1.8% fewer parameters). The key is the validation
        # loss, not the paper's FID-like Frechet distance: at the budgets a CPU affords, one seed's Frechet distance
        # swings several-fold (the conditioning reference: 12.6 to 75.7 over 5 seeds for one variant) while the paired
        # loss is tight; the Frechet distance is measured, fitted against Gflops and drawn all the same.
        key=("val_loss", "w96d3_p1", "w96d3_p4"),
        # Timed with OMP_NUM_THREADS=1 under nice on 2 cores busy with another training run: a training step of batch
        # 64 took 10 (w64d2_p4) to 367 ms (w128d4_p1), 0.83 s for the whole grid and 0.35 s for the notebook's
        # cross (scaling.SCALING_LESSON); 50 samples 0.4 to 4.5 s a variant. The notebook's 5 variants x 2 seeds x 400
        # steps: about 5 minutes there; the reference's 9 x 3 x 2,000 steps, 500 samples each: about 1.5 hours there
        # (w128d4_p1 alone 45%), minutes on a GPU. Seeds 3 and 4 were added later (37 minutes on 2 free cores): with 3
        # the key interval's end touched zero ([-0.064, -0.001])
        lesson=Scale(steps=400, seeds=(0, 1), n_eval=100, n_val=500),
        reference=Scale(steps=2000, seeds=(0, 1, 2, 3, 4), n_eval=500),
        fast=Scale(steps=8, seeds=(0, 1), batch_size=16, n_eval=16, n_val=64),
        modes=("single",),
        cfg_scale=2.0,
        notes={"model": "DiT with adaLN-Zero and absolute positions on 8x8 latents, heads of 32 channels, MLP ratio "
                        "4; sizes " + ", ".join(f"{name} (width {w}, depth {d})" for name, (w, d) in
                                                 SCALING_SIZES.items()) + ", each at patch 4, 2 and 1 (4, 16 and 64 "
                        "tokens): the variants differ only in width, depth and patch size, as named",
               "probe": "single-object adherence and Frechet distance on n_eval held-out captions per seed (CFG 2, "
                        "25 Euler steps), parameters and Gflops (torch's flop counter, one whole forward)",
               "lesson": "notebook 07 runs the cross of the grid at lesson scale (scaling.SCALING_LESSON: the middle "
                         "size at every patch, the other two at patch 2); the reference runs all 9 variants"},
    ),
}


def lends(lender: Comparison, borrower: Comparison, variant: str, scale: str) -> bool:
    """Whether lender's runs of `variant` at a scale are borrower's: the same model builder, data, training settings,
    probes, caption modes, guidance and budget at that scale."""
    same = ("data", "run", "probes", "modes", "cfg_scale", scale)
    return (variant in lender.variants and lender.variants[variant] is borrower.variants.get(variant)
            and lender.train_sizes.get(variant) == borrower.train_sizes.get(variant)
            and all(getattr(lender, name) == getattr(borrower, name) for name in same))


def get_comparison(name: str) -> Comparison:
    if name not in COMPARISONS:
        raise ValueError(f"unknown comparison {name!r}; the comparisons are {', '.join(COMPARISONS)}.")
    return COMPARISONS[name]


def scale_of(comparison: Comparison, scale: str) -> Scale:
    """The budget of a scale; "lesson" means the fast budget in FAST mode (the same code on a tiny budget)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}.")
    if scale == "lesson" and FAST:
        scale = "fast"
    return getattr(comparison, scale)
