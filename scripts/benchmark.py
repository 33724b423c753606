"""Time the pieces students wait on: data generation, the latent cache, the VAE and the judge; training steps
of the lesson models and explorer redraws; the shipped MMDiT's training loop on every device at hand.

    python scripts/benchmark.py            # everything, one line per measurement
    python scripts/benchmark.py models     # only the training steps and the explorers
    python scripts/benchmark.py loop       # only the MMDiT training loop (CPU, and CUDA where present)
"""

import os
import shutil
import sys
import tempfile
import time

import torch

from course_utils.checkpoint import load_model
from course_utils.config import SEEDS
from course_utils.data import render_shapes, to_float
from course_utils.judge import attribute_accuracy, read_scenes
from course_utils.latents import load_latents
from course_utils.vae import reconstruction_psnr


def timed(label, fn, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    print(f"{label:<48} {best:8.2f} s", flush=True)
    return out


def models():
    from course_utils.dit import dit_small, dit_tiny
    from course_utils.explorers import mmdit_attention_explorer, rope_1d_explorer, rope_2d_explorer
    from course_utils.flow import flow_matching_loss
    from course_utils.mmdit import mmdit_small
    from course_utils.unet import unet_small

    torch.set_num_threads(2)
    data = load_latents("train")
    batch = data.latents[:128], (data.ids[:128], data.mask[:128])
    builders = {"U-Net (lesson 02)": unet_small, "DiT-tiny, axial RoPE (lesson 05)": lambda: dit_tiny(pos="rope_axial"),
                "DiT adaLN-Zero (lesson 04)": dit_small, "MMDiT (lesson 06)": mmdit_small}
    for name, build in builders.items():
        model = build()

        def step(model=model):
            flow_matching_loss(model, *batch).backward()

        step()
        timed(f"training step, batch 128: {name}", step, repeat=5)
    one, two = rope_1d_explorer(), rope_2d_explorer()
    timed("1D RoPE explorer redraw", lambda: one.controls["position"].set_trait("value", one.view["position"] + 1), 3)
    timed("2D RoPE explorer redraw", lambda: two.controls["row"].set_trait("value", (two.view["query"][0] + 1) % 15), 3)
    attention = mmdit_attention_explorer(load_model("mmdit"))
    timed("MMDiT attention explorer redraw, step slider",
          lambda: attention.controls["step"].set_trait("value", (attention.controls["step"].value + 1) % 10), 3)
    captions = iter(["a red circle below a blue square", "a green square above a white circle", "a cyan circle"
                     " to the left of an orange diamond"])
    timed("MMDiT attention explorer redraw, new caption (samples it)",
          lambda: attention.controls["caption"].set_trait("value", next(captions)), 3)


def loop(device: torch.device, batch_size: int, steps: int = 10):
    """The shipped MMDiT recipe under train(): ms per step, samples per second, operators per step, and on CUDA
    the kernels per step and the share of the step the GPU is busy (torch.profiler)."""
    from dataclasses import replace

    from course_utils.mmdit import mmdit_small
    from course_utils.profiling import count_operators
    from course_utils.train import MMDIT_RUN, train

    data = load_latents("train")
    cond, model = (data.ids, data.mask), mmdit_small().to(device)
    config = replace(MMDIT_RUN, batch_size=batch_size, val_every=10**9)

    def run(n):
        train(model, data.latents, cond, config=replace(config, steps=n), desc="bench")
        if device.type == "cuda":
            torch.cuda.synchronize()

    run(3)  # warm up
    start = time.perf_counter()
    run(steps)
    ms = (time.perf_counter() - start) / steps * 1000
    ops = count_operators(lambda: run(4)).total() - count_operators(lambda: run(2)).total()
    line = f"MMDiT recipe step on {device.type}, batch {batch_size}: {ms:.1f} ms, {batch_size / ms * 1000:,.0f} " \
           f"samples/s, {ops / 2:.0f} operators"
    if device.type == "cuda":
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            start = time.perf_counter()
            run(steps)
            wall = time.perf_counter() - start
        kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        busy = sum(e.device_time for e in kernels) / 1e6 / wall  # device_time in microseconds
        line += f", {len(kernels) / steps:.0f} kernels, GPU busy {busy:.0%}"
    print(line, flush=True)


def evaluate_time(device: torch.device):
    from course_utils.metrics import evaluate

    model = load_model("mmdit", device)
    timed(f"evaluate the shipped MMDiT on 500 captions ({device.type})", lambda: evaluate(model, n=500, cfg_scale=2.0))


def loops():
    torch.set_num_threads(2)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        for batch_size in (128, 1024):
            loop(device, batch_size, steps=10 if device.type == "cpu" else 50)
        evaluate_time(device)


def main():
    if sys.argv[1:] == ["models"]:
        return models()
    if sys.argv[1:] == ["loop"]:
        return loops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    torch.set_num_threads(1)
    timed("render 50,000 images at 32x32 (1 thread)", lambda: render_shapes(50_000, seed=0))
    torch.set_num_threads(2)
    vae, judge = load_model("vae"), load_model("judge")
    images = to_float(render_shapes(5000, seed=SEEDS["examples"]).images)
    timed("VAE encode 5,000 images", lambda: torch.cat([vae.encode(images[i:i + 500]) for i in range(0, 5000, 500)]))
    timed("judge reads 5,000 images", lambda: read_scenes(judge, images))
    print(f"VAE PSNR on 1,000 fresh images: 32x32 {reconstruction_psnr(vae, size=32):.2f} dB, "
          f"64x64 {reconstruction_psnr(vae, size=64):.2f} dB")
    for size in (32, 64):
        acc = attribute_accuracy(judge, n=1000, size=size)
        print(f"judge accuracy at {size}x{size}: " + ", ".join(f"{k} {v:.4f}" for k, v in acc.items()))

    models()
    loops()

    cache = tempfile.mkdtemp()
    os.environ["COURSE_CACHE"] = cache
    try:
        timed("build train + val latent cache (55,000)", lambda: (load_latents("train"), load_latents("val")))
        timed("load train latent cache (50,000)", lambda: load_latents("train"), repeat=3)
    finally:
        shutil.rmtree(cache)


if __name__ == "__main__":
    main()
