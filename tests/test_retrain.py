"""The one retrain command: it writes elsewhere unless asked, and installs into data/ only what passes its checks.
The command runs as a subprocess on a temporary copy of data/ (env COURSE_DATA), so data/ itself is never touched."""

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from course_utils.checkpoint import load_model, sha256_file
from course_utils.config import DATA_DIR
from course_utils.retrain import RECIPES, adherence_check, denoiser_run, retrain_command
from course_utils.unet import unet_small


@pytest.fixture
def data_copy(tmp_path):
    copy = tmp_path / "data"
    copy.mkdir()
    for path in DATA_DIR.iterdir():
        if path.is_file():
            shutil.copy(path, copy / path.name)
    return copy


def retrain(*args, data):
    env = {**os.environ, "COURSE_DATA": str(data), "COURSE_CACHE": str(DATA_DIR / "cache")}
    return subprocess.run([sys.executable, "-m", "course_utils.retrain", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def test_retrain_writes_its_output_folder_and_leaves_data_alone(data_copy, tmp_path):
    before = {p.name: sha256_file(p) for p in data_copy.iterdir()}
    run = retrain("vae", "--steps", "2", "--out", str(tmp_path / "out"), data=data_copy)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["steps"] == 2 and report["checks"] == {"finite": True, "trained": True}
    assert report["sha256"] == sha256_file(tmp_path / "out" / "vae.pt")
    assert load_model(tmp_path / "out" / "vae.pt").config["channels"] == (16, 32, 64)
    assert {p.name: sha256_file(p) for p in data_copy.iterdir()} == before


def test_install_replaces_the_file_and_its_checksum_atomically(data_copy, tmp_path):
    run = retrain("vae", "--steps", "2", "--out", str(tmp_path / "out"), "--install", data=data_copy)
    assert run.returncode == 0, run.stderr[-2000:]
    new = sha256_file(data_copy / "vae.pt")
    assert new == sha256_file(tmp_path / "out" / "vae.pt") != sha256_file(DATA_DIR / "vae.pt")
    assert f"{new}  vae.pt" in (data_copy / "SHA256SUMS").read_text()
    assert not [p for p in data_copy.iterdir() if p.name.startswith(".")]  # no temporary file left behind


@pytest.mark.parametrize("name", ["vae", "judge", "unet", "dit", "mmdit"])
def test_zero_steps_is_refused_before_anything_runs(data_copy, name):
    before = {p.name: sha256_file(p) for p in data_copy.iterdir()}
    run = retrain(name, "--steps", "0", "--install", data=data_copy)
    assert run.returncode == 2 and "--steps must be at least 1" in run.stderr
    assert {p.name: sha256_file(p) for p in data_copy.iterdir()} == before


def test_an_untrained_denoiser_fails_the_adherence_check():
    torch.manual_seed(0)
    check = adherence_check(unet_small(), load_model("unet"), n=40)
    assert not check["passed"] and check["candidate"] < 0.1 < check["shipped"]
    assert adherence_check(load_model("unet"), load_model("unet"), n=40)["passed"]


def test_every_shipped_denoiser_has_a_recipe_with_an_ema():
    assert set(RECIPES) == {"unet", "dit", "mmdit"}
    assert all(recipe.run.ema_decay and recipe.run.cfg_dropout > 0 for recipe in RECIPES.values())
    assert RECIPES["mmdit"].mode_weights == {"relation": 2.5} and RECIPES["mmdit"].run.lr_decay == "cosine"


def test_a_killed_run_resumed_from_its_folder_ends_with_the_same_weights(data_copy, tmp_path):
    """kill -9 once the first snapshot is on disk, then --resume: the same weights as an uncut run, bit for bit."""
    args = ["unet", "--steps", "20", "--batch-size", "8", "--seed", "3"]
    whole = retrain(*args, "--out", str(tmp_path / "whole"), data=data_copy)
    assert whole.returncode == 0, whole.stderr[-2000:]
    env = {**os.environ, "COURSE_DATA": str(data_copy), "COURSE_CACHE": str(DATA_DIR / "cache")}
    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "course_utils.retrain", *args, "--out", str(cut)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (cut / "snapshot.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert torch.load(cut / "snapshot.pt", weights_only=True)["step"] < 20, "the run ended before it was cut"
    resumed = retrain("unet", "--resume", str(cut), data=data_copy)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = (torch.load(path / "unet.pt", weights_only=True)["state_dict"] for path in (cut, tmp_path / "whole"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    wrong = retrain("dit", "--resume", str(cut), data=data_copy)
    assert wrong.returncode == 2 and "holds a unet run" in wrong.stderr


def test_batch_size_rescales_the_recipe_by_the_square_root_rule():
    cpu = denoiser_run("unet", device="cpu")
    assert cpu == replace(RECIPES["unet"].run, seed=0) and cpu.batch_size == 128
    bigger = denoiser_run("unet", batch_size=512, device="cpu")
    assert bigger.batch_size == 512 and bigger.lr == pytest.approx(2 * cpu.lr) and bigger.steps == cpu.steps
    gpu = denoiser_run("unet", device="cuda")  # the large-batch recipe
    assert (gpu.batch_size, gpu.lr, gpu.steps) == (1024, pytest.approx(cpu.lr * 8**0.5), 4500)
    assert denoiser_run("unet", device="cpu", gpu_recipe=True) == gpu  # --gpu-recipe: the same run on the CPU
    # the transformers train the measured large-batch run everywhere: the shipped files are that run
    for name in ("dit", "mmdit"):
        run = denoiser_run(name, device="cpu")
        assert run == denoiser_run(name, device="cuda")
        assert (run.batch_size, run.lr, run.steps, run.lr_decay) == (1024, 3e-3, 4500, "cosine")


def test_a_diverging_run_stops_and_installs_nothing(data_copy, tmp_path):
    before = {p.name: sha256_file(p) for p in data_copy.iterdir()}
    run = retrain("unet", "--steps", "40", "--batch-size", "8", "--lr", "1e6", "--out", str(tmp_path / "out"),
                  "--install", data=data_copy)
    assert run.returncode != 0 and "FloatingPointError: the training loss is not finite by step" in run.stderr
    assert {p.name: sha256_file(p) for p in data_copy.iterdir()} == before
    assert not (tmp_path / "out" / "unet.pt").exists()


@pytest.mark.parametrize("name,who", [("vae", "the VAE's"), ("judge", "the judge's")])
def test_a_diverging_vae_or_judge_run_stops_and_leaves_data_byte_identical(data_copy, tmp_path, name, who):
    """An absurd --lr: the loss is non-finite by the last of 2 steps (the loops look at step 0, every 50, the last)."""
    before = {p.name: sha256_file(p) for p in data_copy.iterdir()}
    run = retrain(name, "--steps", "2", "--lr", "1e30", "--out", str(tmp_path / "out"), "--install", data=data_copy)
    assert run.returncode != 0
    assert f"FloatingPointError: {who} training loss is not finite at step 1; lower lr=1e+30" in run.stderr
    assert {p.name: sha256_file(p) for p in data_copy.iterdir()} == before
    assert not (tmp_path / "out" / f"{name}.pt").exists()


def test_lr_must_be_positive_and_finite(data_copy):
    for lr in ("-1", "inf"):
        run = retrain("judge", "--steps", "2", "--lr", lr, data=data_copy)
        assert run.returncode == 2 and "--lr must be a positive, finite learning rate" in run.stderr, lr


def test_retrain_command_gives_back_the_command_line_of_a_run():
    settings = {"name": "mmdit", "steps": None, "seed": 0, "batch_size": 1024, "compile": True, "lr": None,
                "gpu_recipe": False}
    assert retrain_command(settings, 1, "runs/x") == (
        "python -m course_utils.retrain mmdit --seed 0 --batch-size 1024 --compile --out runs/x")
    assert retrain_command({**settings, "steps": 9, "compile": False, "gpu_recipe": True}, 4, "o") == (
        "torchrun --nproc-per-node 4 -m course_utils.retrain mmdit --steps 9 --seed 0 --batch-size 1024 "
        "--gpu-recipe --out o")
