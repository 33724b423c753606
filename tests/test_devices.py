"""Every tensor follows its inputs' device: each model runs on a device that is not the CPU, without a GPU.

Models are built on the CPU and moved with `.to(DEVICE)` (never built under a default-device context, which would
hide a table made on the CPU inside `forward`). On the "meta" device every op that mixes it with a CPU tensor
raises ("Tensor on device cpu is not on the expected device meta"), as a CUDA run would, so a RoPE table, mask,
noise or time grid made on the CPU fails here. Meta tensors have shapes but no values: these tests check devices and
shapes, the other test files check the numbers.
"""

import pytest
import torch

from course_utils.data import Tokenizer
from course_utils.dit import CONDITIONINGS, dit_tiny
from course_utils.flow import euler_sample, flow_matching_loss
from course_utils.judge import Judge
from course_utils.mmdit import TextEncoder, mmdit_small
from course_utils.rope import POSITIONS
from course_utils.sd3_baselines import cross_small, in_context_small
from course_utils.unet import unet_small
from course_utils.vae import VAE

DEVICE = torch.device("meta")
CAPTIONS = ["a red circle above a blue square", "two small red circles"]

DENOISERS = {
    "unet": lambda: unet_small(),
    **{f"dit {c}": (lambda c=c: dit_tiny(c, depth=2)) for c in CONDITIONINGS},
    **{f"dit adaln_zero {p}": (lambda p=p: dit_tiny(depth=2, pos=p)) for p in POSITIONS if p != "absolute"},
    **{f"dit in_context {p}": (lambda p=p: dit_tiny("in_context", depth=2, pos=p)) for p in ("rope_axial",)},
    **{f"mmdit {p}": (lambda p=p: mmdit_small(depth=2, pos=p)) for p in POSITIONS},
    "sd3 in-context baseline": lambda: in_context_small(depth=2),
    "sd3 cross-attention baseline": lambda: cross_small(depth=2),
}


def on_device(*tensors):
    return tuple(t.to(DEVICE) for t in tensors)


@pytest.mark.parametrize("name", list(DENOISERS))
def test_denoiser_runs_forward_loss_and_a_guided_sample_off_the_cpu(name):
    model = DENOISERS[name]().to(DEVICE)
    x = torch.empty(2, 4, 8, 8, device=DEVICE)
    cond = on_device(*Tokenizer().encode(CAPTIONS))
    v = model(x, torch.rand(2).to(DEVICE), cond)
    assert v.shape == x.shape and v.device == DEVICE
    loss = flow_matching_loss(model, x, cond)
    loss.backward()
    assert loss.device == DEVICE and all(p.grad.device == DEVICE for p in model.parameters() if p.grad is not None)
    sample = euler_sample(model, x, cond, steps=2, null_cond=model.null_condition(), cfg_scale=2.0)
    assert sample.shape == x.shape and sample.device == DEVICE


def test_text_encoder_vae_networks_and_judge_run_forward_off_the_cpu():
    ids, mask = on_device(*Tokenizer().encode(CAPTIONS))
    tokens, full_mask, pooled = TextEncoder(len(Tokenizer()), 12, 32, depth=1).to(DEVICE)(ids, mask)
    assert tokens.shape == (2, 13, 32) and pooled.device == DEVICE
    vae = VAE(channels=(16, 32, 64)).to(DEVICE)
    images = torch.empty(2, 3, 32, 32, device=DEVICE)
    mean, logvar = vae.encoder(images)
    assert mean.shape == (2, 4, 8, 8) and vae.decoder(mean).shape == images.shape
    out = Judge(width=8).to(DEVICE)(images)
    assert out["objectness"].shape == (2, 8, 8) and out["shape"].device == DEVICE
