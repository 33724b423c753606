"""Bad input across the course's public edges, tried as a careless student would (issue 23): every case raises
the documented exception, and its message names the argument. Tiny models keep the sweep fast."""

import numpy as np
import pytest
import torch

from course_utils import checkpoint, config, data, flow, latents, metrics, train
from course_utils.dit import dit_tiny
from course_utils.explorers import adaln as adaln_explorer
from course_utils.explorers import mmdit_attention, patches
from course_utils.explorers import receptive_field as rf_explorer
from course_utils.explorers import rope as rope_explorer
from course_utils.judge import Judge, attribute_accuracy, read_scenes, train_judge
from course_utils.mmdit import mmdit_small
from course_utils.unet import unet_small
from course_utils.vae import VAE, psnr, train_vae

CAPTION = "a red circle in the center"


class Setup:
    """The tiny models and inputs every case shares (built once for the module)."""

    def __init__(self):
        torch.manual_seed(0)
        self.unet = unet_small(channels=(8, 16), blocks=1, attention=False).eval()
        self.dit = dit_tiny(depth=1, dim=32, heads=2).eval()
        self.mmdit = mmdit_small(depth=1, dim=32, heads=2, text_depth=1).eval()
        self.tok = data.Tokenizer(12)
        self.cond = self.tok.encode([CAPTION, "two small blue squares"])
        self.x, self.t = torch.randn(2, 4, 8, 8), torch.rand(2)
        self.judge, self.vae = Judge(width=8).eval(), VAE(channels=(8, 8, 8)).eval()
        self.images = data.render_shapes(2, seed=1).images
        self.records = data.render_shapes(2, seed=1).records
        self.latents = torch.randn(20, 4, 8, 8)
        self.cond20 = self.tok.encode([CAPTION] * 20)
        self.run = train.TrainConfig(steps=2, batch_size=4, warmup=0)


@pytest.fixture(scope="module")
def s():
    return Setup()


def models(s):
    return {"unet": s.unet, "dit": s.dit, "mmdit": s.mmdit}


# (id, call, exception, regex the message must match: it names the argument)
CASES = [
    # the tokenizer and the captions
    ("encode None", lambda s: s.tok.encode(None), ValueError, r"captions must be a caption string or a list"),
    ("encode an int", lambda s: s.tok.encode(5), ValueError, r"captions must be .* got 5"),
    ("encode ids", lambda s: s.tok.encode([1, 2]), ValueError, r"captions must be .* got \[1, 2\]"),
    ("unknown word", lambda s: s.tok.encode(["a red dog"]), ValueError, r"unknown word 'dog' in caption"),
    ("caption too long", lambda s: data.Tokenizer(3).encode([CAPTION]), ValueError, r"caption .* at most 3 fit"),
    ("max_len 0", lambda s: data.Tokenizer(0), ValueError, r"max_len must be a positive integer .* got 0"),
    ("max_len float", lambda s: data.Tokenizer(2.5), ValueError, r"max_len must be a positive integer .* got 2.5"),
    ("decode a list", lambda s: s.tok.decode([[1, 2]]), ValueError, r"ids must be an integer tensor \(B, L\)"),
    ("decode 1-D ids", lambda s: s.tok.decode(torch.tensor([1, 2])), ValueError, r"ids must be an integer tensor"),
    ("decode unknown id", lambda s: s.tok.decode(torch.tensor([[999]])), ValueError, r"ids must lie in 0\.\.\d+"),
    ("decode float ids", lambda s: s.tok.decode(torch.tensor([[1.5]])), ValueError, r"ids must be an integer"),
    ("position off the grid", lambda s: data.position_name(5, 0), ValueError, r"row and col must each be 0, 1 or 2"),
    ("render seed string", lambda s: data.render_shapes(2, seed="a"), ValueError, r"seed must be a non-negative"),
    ("render seed None", lambda s: data.render_shapes(2, seed=None), ValueError, r"seed must be .* got None"),
    ("render seed negative", lambda s: data.render_shapes(2, seed=-1), ValueError, r"seed must be .* got -1"),
    ("render mode", lambda s: data.render_shapes(2, seed=0, mode="singles"), ValueError, r"mode must be one of"),
    ("render size 40", lambda s: data.render_shapes(2, seed=0, size=40), ValueError, r"size must be a positive mult"),
    # the three denoisers' forward
    *[(f"{m} x 3-D", lambda s, m=m: models(s)[m](s.x[0], s.t, s.cond), ValueError, r"latents \(B, 4, H, W\).* for x")
      for m in ("unet", "dit", "mmdit")],
    *[(f"{m} x integer", lambda s, m=m: models(s)[m](s.x.long(), s.t, s.cond), ValueError,
       r"x must be torch.float32 like this \w+'s weights, got torch.int64") for m in ("unet", "dit", "mmdit")],
    ("dit x double", lambda s: s.dit(s.x.double(), s.t, s.cond), ValueError, r"x must be torch.float32 .*float64"),
    ("unet x half", lambda s: s.unet(s.x.half(), s.t, s.cond), ValueError, r"x must be torch.float32 .*float16"),
    ("unet t a float", lambda s: s.unet(s.x, 0.5, s.cond), ValueError, r"t must be a float tensor of shape \(2,\)"),
    ("dit t 0-D", lambda s: s.dit(s.x, torch.tensor(0.5), s.cond), ValueError, r"t must be a float tensor .*\(\)"),
    ("mmdit t (B, 1)", lambda s: s.mmdit(s.x, s.t[:, None], s.cond), ValueError, r"t must be .* got \(\(2, 1\)"),
    ("dit t integer", lambda s: s.dit(s.x, torch.ones(2, dtype=torch.long), s.cond), ValueError, r"t must be a fl"),
    ("dit cond None", lambda s: s.dit(s.x, s.t, None), ValueError, r"cond must be a caption batch \(ids, mask\)"),
    ("mmdit ids only", lambda s: s.mmdit(s.x, s.t, s.cond[0]), ValueError, r"cond must be a caption batch"),
    ("unet cond as lists", lambda s: s.unet(s.x, s.t, tuple(c.tolist() for c in s.cond)), ValueError,
     r"cond's ids and mask must be tensors"),
    ("dit cond numpy", lambda s: s.dit(s.x, s.t, tuple(c.numpy() for c in s.cond)), ValueError,
     r"cond's ids and mask must be tensors .* got ndarray"),
    ("mmdit float mask", lambda s: s.mmdit(s.x, s.t, (s.cond[0], s.cond[1].float())), ValueError,
     r"cond's ids must be integers and its mask bool"),
    ("unet caption batch 4", lambda s: s.unet(s.x[:1], s.t[:1], tuple(c.repeat(2, 1) for c in s.cond)), ValueError,
     r"cond's ids and mask must each be \(1, 12\)"),
    ("dit 7x7 latents", lambda s: s.dit(torch.randn(2, 4, 7, 7), s.t, s.cond), ValueError, r"patch size 2 must div"),
    ("unet 7x7 latents", lambda s: s.unet(torch.randn(2, 4, 7, 7), s.t, s.cond), ValueError, r"H and W must be div"),
    ("t on another device", lambda s: s.unet(s.x, s.t.to("meta"), s.cond), ValueError,
     r"x, t and cond must be on one device, got x on cpu, t on meta"),
    # the samplers
    ("euler noise list", lambda s: flow.euler_sample(s.dit, [0.0], s.cond, 2), ValueError, r"noise must be a float"),
    ("heun noise integer", lambda s: flow.heun_sample(s.dit, s.x.long(), s.cond, 2), ValueError,
     r"noise must be a float tensor .* torch.int64"),
    ("euler steps 0", lambda s: flow.euler_sample(s.dit, s.x, s.cond, 0), ValueError, r"steps must be at least 1"),
    ("euler steps '5'", lambda s: flow.euler_sample(s.dit, s.x, s.cond, "5"), ValueError, r"steps must be .*'5'"),
    ("heun steps 2.5", lambda s: flow.heun_sample(s.dit, s.x, s.cond, 2.5), ValueError, r"steps must be .* 2.5"),
    ("one noise two captions", lambda s: flow.euler_sample(s.dit, s.x[:1], s.cond, 2), ValueError,
     r"cond's ids and mask must each be \(1, 12\) for x of batch 1"),
    ("cfg without null", lambda s: flow.euler_sample(s.dit, s.x, s.cond, 2, None, 3.0), ValueError, r"null_cond"),
    ("cfg nan", lambda s: flow.euler_sample(s.dit, s.x, s.cond, 2, s.dit.null_condition(), float("nan")),
     ValueError, r"cfg_scale must be a finite number"),
    ("null_cond too short", lambda s: flow.euler_sample(s.mmdit, s.x, s.cond, 2, data.Tokenizer(8).encode([""]), 2.0),
     ValueError, r"null_cond must be like cond with batch 1"),
    ("null_cond ids only", lambda s: flow.heun_sample(s.unet, s.x, s.cond, 2, s.unet.null_condition()[0], 2.0),
     ValueError, r"null_cond must be like cond"),
    ("generate one string", lambda s: flow.generate(s.dit, CAPTION, s.vae, steps=1), ValueError,
     r"captions must be a non-empty list of strings \(wrap one caption in a list\)"),
    ("generate no captions", lambda s: flow.generate(s.dit, [], s.vae, steps=1), ValueError, r"captions must be a non"),
    ("generate ids", lambda s: flow.generate(s.dit, [1], s.vae, steps=1), ValueError, r"captions must be .* \[1\]"),
    ("generate batch_size 0", lambda s: flow.generate(s.dit, [CAPTION], s.vae, steps=1, batch_size=0), ValueError,
     r"batch_size must be a positive integer"),
    ("generate latent_size -4", lambda s: flow.generate(s.dit, [CAPTION], s.vae, steps=1, latent_size=-4),
     ValueError, r"latent_size must be a positive integer"),
    ("generate steps 0", lambda s: flow.generate(s.dit, [CAPTION], s.vae, steps=0), ValueError, r"steps must be at"),
    ("trajectory one string", lambda s: flow.sample_trajectory(s.mmdit, CAPTION, steps=1), ValueError,
     r"captions must be a non-empty list"),
    ("trajectory seed string", lambda s: flow.sample_trajectory(s.mmdit, [CAPTION], steps=1, seed="x"), ValueError,
     r"seed must be an integer, got 'x'"),
    ("timesteps n -1", lambda s: flow.sample_timesteps(-1), ValueError, r"n must be a non-negative integer"),
    ("dropout p string", lambda s: flow.drop_condition(s.cond[0], s.cond[0][:1], "0.1"), ValueError,
     r"dropout p must be a probability"),
    ("clean_estimate t", lambda s: flow.clean_estimate(s.x, torch.rand(3), s.x), ValueError, r"t must be a float "),
    ("interpolate x0", lambda s: flow.interpolate(s.x[:1], s.x, s.t), ValueError, r"x0 \(noise\) must have the sha"),
    # train and TrainConfig
    ("steps 10.0", lambda s: train.TrainConfig(steps=10.0), ValueError, r"TrainConfig.steps must be an integer"),
    ("lr string", lambda s: train.TrainConfig(steps=10, lr="1e-3"), ValueError, r"TrainConfig.lr must be a finite"),
    ("lr inf", lambda s: train.TrainConfig(steps=10, lr=float("inf")), ValueError, r"TrainConfig.lr must be a fin"),
    ("lr 0", lambda s: train.TrainConfig(steps=10, lr=0.0), ValueError, r"TrainConfig.lr and grad_clip must be pos"),
    ("grad_clip 0", lambda s: train.TrainConfig(steps=10, grad_clip=0), ValueError, r"grad_clip must be positive"),
    ("weight_decay -1", lambda s: train.TrainConfig(steps=10, weight_decay=-1.0), ValueError, r"weight_decay must"),
    ("val_every 0", lambda s: train.TrainConfig(steps=10, val_every=0), ValueError, r"TrainConfig.val_every must"),
    ("ema_decay string", lambda s: train.TrainConfig(steps=10, ema_decay="0.9"), ValueError, r"ema_decay must be"),
    ("ema_decay 1.5", lambda s: train.TrainConfig(steps=10, ema_decay=1.5), ValueError, r"ema_decay must be in"),
    ("batch_size 0", lambda s: train.TrainConfig(steps=10, batch_size=0), ValueError, r"TrainConfig.batch_size"),
    ("compile 'yes'", lambda s: train.TrainConfig(steps=10, compile="yes"), ValueError, r"compile must be True or"),
    ("scale_batch -8", lambda s: train.scale_batch(s.run, -8), ValueError, r"batch_size must be a positive integer"),
    ("config a dict", lambda s: train.train(s.dit, s.latents, s.cond20, config={"steps": 2}), ValueError,
     r"config must be a TrainConfig"),
    ("latents numpy", lambda s: train.train(s.dit, s.latents.numpy(), s.cond20, config=s.run), ValueError,
     r"latents must be a float tensor"),
    ("latents with NaN", lambda s: train.train(s.dit, s.latents.clone().index_fill_(0, torch.tensor([3]), np.nan),
                                               s.cond20, config=s.run), ValueError, r"latents must be non-empty and"),
    ("fewer conditions", lambda s: train.train(s.dit, s.latents, tuple(c[:10] for c in s.cond20), config=s.run),
     ValueError, r"cond must hold one condition per latent"),
    ("weights a list", lambda s: train.train(s.dit, s.latents, s.cond20, config=s.run, sample_weights=[1.0] * 20),
     ValueError, r"sample_weights must be a tensor"),
    ("weights NaN", lambda s: train.train(s.dit, s.latents, s.cond20, config=s.run,
                                          sample_weights=torch.full((20,), np.nan)), ValueError, r"sample_weights mu"),
    ("val not a pair", lambda s: train.train(s.dit, s.latents, s.cond20, config=s.run, val=s.latents[:5]), ValueError,
     r"val must be a pair \(latents, cond\)"),
    ("val conditions short", lambda s: train.train(s.dit, s.latents, s.cond20, config=s.run,
                                                   val=(s.latents[:5], tuple(c[:4] for c in s.cond20))),
     ValueError, r"val\[1\] must hold one condition per latent"),
    ("null_cond too short for train", lambda s: train.train(
        s.dit, s.latents, s.cond20, config=train.TrainConfig(steps=2, batch_size=4, cfg_dropout=0.5),
        null_cond=data.Tokenizer(8).encode([""])), ValueError, r"null_cond must be like cond"),
    ("validation batch_size 0", lambda s: train.validation_loss(s.dit, s.latents, s.cond20, batch_size=0),
     ValueError, r"batch_size must be a positive integer"),
    ("train_vae steps 0", lambda s: train_vae(steps=0), ValueError, r"steps must be a positive integer, got 0"),
    ("train_vae batch 2", lambda s: train_vae(steps=1, batch_size=2), ValueError, r"batch_size must be an integer >="),
    ("train_judge lr -1", lambda s: train_judge(steps=1, lr=-1.0), ValueError, r"lr must be a positive, finite"),
    ("mode weights negative", lambda s: latents.mode_sample_weights(torch.zeros(3, 2, dtype=torch.long),
                                                                    {"relation": -1.0}), ValueError, r"mode_weights"),
    ("scene table 1-D", lambda s: latents.mode_sample_weights(torch.zeros(3, dtype=torch.long), {"relation": 2.0}),
     ValueError, r"scenes must be the integer scene table"),
    ("unknown split", lambda s: latents.load_latents("training"), ValueError, r"unknown split 'training'"),
    # the judge and the metrics
    ("read_scenes numpy", lambda s: read_scenes(s.judge, s.images.numpy()), ValueError, r"images must be a batch"),
    ("read_scenes channels last", lambda s: read_scenes(s.judge, s.images.permute(0, 2, 3, 1)), ValueError,
     r"images must be a batch \(B, 3, H, W\)"),
    ("read_scenes 0..255 floats", lambda s: read_scenes(s.judge, s.images.float()), ValueError,
     r"images must be floats in \[-1, 1\] .* from 24 to 245"),
    ("read_scenes int64", lambda s: read_scenes(s.judge, s.images.long()), ValueError, r"images must be uint8 .*int64"),
    ("read_scenes NaN", lambda s: read_scenes(s.judge, torch.full((1, 3, 32, 32), np.nan)), ValueError,
     r"images must be floats in \[-1, 1\]"),
    ("read_scenes no images", lambda s: read_scenes(s.judge, s.images[:0]), ValueError, r"B >= 1"),
    ("read_scenes 32x48", lambda s: read_scenes(s.judge, torch.zeros(1, 3, 32, 48)), ValueError, r"H = W a multiple"),
    ("read_scenes batch_size 0", lambda s: read_scenes(s.judge, s.images, batch_size=0), ValueError,
     r"batch_size must be a positive integer"),
    ("adherence no records", lambda s: metrics.prompt_adherence(s.images, [], s.judge), ValueError,
     r"records must be a non-empty list of scene records"),
    ("adherence captions as records", lambda s: metrics.prompt_adherence(s.images, [CAPTION] * 2, s.judge),
     ValueError, r"records must be .* scene records"),
    ("adherence 3 records", lambda s: metrics.prompt_adherence(s.images, s.records + s.records[:1], s.judge),
     ValueError, r"records must hold one scene record per image: 2 images, got 3"),
    ("adherence 0..255 floats", lambda s: metrics.prompt_adherence(s.images.float(), s.records, s.judge), ValueError,
     r"images must be floats in \[-1, 1\]"),
    ("frechet one image", lambda s: metrics.frechet_distance(s.images[:1], s.images, s.judge), ValueError,
     r"real must hold at least 2 images"),
    ("frechet numpy", lambda s: metrics.frechet_distance(s.images, s.images.numpy(), s.judge), ValueError,
     r"fake must be a batch \(B, 3, H, W\)"),
    ("funnel no records", lambda s: metrics.two_object_funnel({"present": torch.zeros(0, 3, 3)}, []), ValueError,
     r"records must be a non-empty list"),
    ("evaluate mode", lambda s: metrics.evaluate(s.dit, n=2, mode="two", vae=s.vae, judge=s.judge), ValueError,
     r"mode must be one of \('single', 'relation', 'pair', 'twins'\)"),
    ("evaluate steps 0", lambda s: metrics.evaluate(s.dit, n=2, steps=0, vae=s.vae, judge=s.judge), ValueError,
     r"steps must be at least 1"),
    ("accuracy n 0", lambda s: attribute_accuracy(s.judge, n=0), ValueError, r"n must be a positive integer"),
    # the VAE
    ("encode 0..255 floats", lambda s: s.vae.encode(s.images.float()), ValueError, r"images must be floats in \[-1"),
    ("encode numpy", lambda s: s.vae.encode(s.images.numpy()), ValueError, r"images must be a batch"),
    ("encode grey", lambda s: s.vae.encode(torch.zeros(1, 1, 32, 32)), ValueError, r"images must be a batch .* RGB"),
    ("encode 30x30", lambda s: s.vae.encode(torch.zeros(1, 3, 30, 30)), ValueError, r"H and W multiples of 4"),
    ("decode 3 channels", lambda s: s.vae.decode(torch.randn(1, 3, 8, 8)), ValueError, r"latents \(B, 4, h, w\)"),
    ("decode 3-D", lambda s: s.vae.decode(torch.randn(4, 8, 8)), ValueError, r"latents \(B, 4, h, w\)"),
    ("decode integers", lambda s: s.vae.decode(torch.zeros(1, 4, 8, 8, dtype=torch.long)), ValueError,
     r"float latents \(B, 4, h, w\), got \(\(1, 4, 8, 8\), 'torch.int64'\)"),
    ("decode numpy", lambda s: s.vae.decode(np.zeros((1, 4, 8, 8), np.float32)), ValueError, r"float latents"),
    ("decode NaN", lambda s: s.vae.decode(torch.full((1, 4, 8, 8), np.nan)), ValueError, r"latents must be finite"),
    ("psnr shapes differ", lambda s: psnr(torch.zeros(2, 3, 4, 4), torch.zeros(1, 3, 4, 4)), ValueError,
     r"images and recon must be tensors of one shape"),
    # checkpoints
    ("load a missing file", lambda s: checkpoint.load_model("/nonexistent/unet.pt"), FileNotFoundError,
     r"checkpoint /nonexistent/unet.pt does not exist"),
    ("load a model name", lambda s: checkpoint.load_model("DiT"), ValueError, r"a shipped model name .* got 'DiT'"),
    ("load a number", lambda s: checkpoint.load_model(3), ValueError, r"load_model takes a shipped model name"),
    ("load on device 'gpu'", lambda s: checkpoint.load_model("vae", device="gpu"), ValueError,
     r"device must be a torch device .* got 'gpu'"),
    ("load a shipped name not listed", lambda s: checkpoint.load_shipped("gan.pt"), FileNotFoundError,
     r"gan.pt is not among the shipped files"),
    # the explorers
    ("rope_2d row -1", lambda s: rope_explorer.rope_2d_view(row=-1), ValueError, r"row must be an integer from 0"),
    ("rope_2d col 15", lambda s: rope_explorer.rope_2d_view(col=15), ValueError, r"col must be an integer from 0 to 1"),
    ("rope_2d row 7.5", lambda s: rope_explorer.rope_2d_view(row=7.5), ValueError, r"row must be an integer"),
    ("rope_2d grid 0", lambda s: rope_explorer.rope_2d_view(grid=0), ValueError, r"grid must be a positive integer"),
    ("rope_2d kind", lambda s: rope_explorer.rope_2d_view(kind="diagonal"), ValueError, r"kind must be one of"),
    ("rope_1d theta 0", lambda s: rope_explorer.rope_1d_view(theta=0), ValueError, r"theta must be a finite number"),
    ("rope_1d max_offset -1", lambda s: rope_explorer.rope_1d_view(max_offset=-1), ValueError, r"max_offset must be"),
    ("rope_1d pair 8", lambda s: rope_explorer.rope_1d_view(pair=8), ValueError, r"pair must be an integer from 0 to"),
    ("field depth 0", lambda s: rf_explorer.receptive_field_view(0), ValueError, r"depth must be an integer >= 1"),
    ("field depth 20", lambda s: rf_explorer.receptive_field_view(20), ValueError, r"depth must be at most max_depth"),
    ("field image 0", lambda s: rf_explorer.receptive_field_view(2, image_size=0), ValueError, r"image_size must be"),
    ("field downsample -1", lambda s: rf_explorer.receptive_field_view(2, downsample_every=-1), ValueError,
     r"downsample_every must be an integer >= 0"),
    ("patch size 3", lambda s: patches.patch_view(3, np.zeros((32, 32, 3)), torch.randn(1, 4, 8, 8)), ValueError,
     r"patch size 3 must divide"),
    ("patch explorer 5", lambda s: patches.patch_explorer(patch_size=5, vae=s.vae), ValueError,
     r"patch_size must be one of \(1, 2, 4, 8\)"),
    ("adaln t 2", lambda s: adaln_explorer.adaln_view(s.dit, torch.randn(1, 4, 8, 8), t=2.0), ValueError,
     r"t must be a time in \[0, 1\]"),
    ("adaln t string", lambda s: adaln_explorer.adaln_view(s.dit, torch.randn(1, 4, 8, 8), t="0.5"), ValueError,
     r"t must be a time"),
    ("adaln two latents", lambda s: adaln_explorer.adaln_view(s.dit, torch.randn(2, 4, 8, 8)), ValueError,
     r"latent must be one clean latent \(1, 4, s, s\)"),
    ("adaln on a U-Net", lambda s: adaln_explorer.adaln_view(s.unet, torch.randn(1, 4, 8, 8)), ValueError,
     r"model must be a DiT with adaLN"),
    ("adaln channel 32", lambda s: adaln_explorer.adaln_view(s.dit, torch.randn(1, 4, 8, 8), channel=32), ValueError,
     r"channel must be an integer from 0 to 31"),
    ("attention word -1", lambda s: mmdit_attention.mmdit_attention_view(s.mmdit, s.vae, word=-1, steps=2, step=1),
     ValueError, r"word must be an integer from 0"),
    ("attention step 5 of 2", lambda s: mmdit_attention.mmdit_attention_view(s.mmdit, s.vae, steps=2, step=5),
     ValueError, r"step must be an integer from 0 to 2"),
    ("attention caption list", lambda s: mmdit_attention.mmdit_attention_view(s.mmdit, s.vae, caption=[CAPTION]),
     ValueError, r"caption must be one caption string"),
    ("attention on a DiT", lambda s: mmdit_attention.mmdit_attention_view(s.dit, s.vae), ValueError,
     r"model must be an MMDiT"),
]


@pytest.mark.parametrize("call,error,pattern", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_named(s, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call(s)


def test_the_sweep_is_wide_and_its_names_unique():
    assert len(CASES) >= 60 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("raw", ["2", "maybe", "tru", "1.0", "y es"])
def test_a_flag_that_is_neither_true_nor_false_is_named(monkeypatch, raw):
    monkeypatch.setenv("COURSE_FAST", raw)
    with pytest.raises(ValueError, match=rf"COURSE_FAST={raw!r} is neither true nor false"):
        config.env_flag("COURSE_FAST")


@pytest.mark.parametrize("raw,value", [(" 1", True), ("true", True), ("YES ", True), ("on", True), ("0", False),
                                       ("False", False), (" no", False), ("", False)])
def test_a_flag_takes_the_usual_spellings(monkeypatch, raw, value):
    monkeypatch.setenv("COURSE_FAST", raw)
    assert config.env_flag("COURSE_FAST") is value


@pytest.mark.parametrize("raw,error,pattern", [
    ("gpu", ValueError, r"COURSE_DEVICE='gpu' is not a device; use one of cuda, mps, cpu"),
    ("tpu ", ValueError, r"COURSE_DEVICE='tpu' is not a device"),
    ("cuda" if not torch.cuda.is_available() else "mps", RuntimeError, r"COURSE_DEVICE='\w+' was asked for"),
])
def test_course_device_names_the_variable(monkeypatch, raw, error, pattern):
    monkeypatch.setenv("COURSE_DEVICE", raw)
    with pytest.raises(error, match=pattern):
        config.get_device()


def test_a_corrupt_checkpoint_is_named(tmp_path):
    (tmp_path / "unet.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"checkpoint .*unet.pt could not be read \(UnpicklingError\); it is corrupt"):
        checkpoint.load_model(tmp_path / "unet.pt")
