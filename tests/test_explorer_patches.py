"""The patch explorer: tokens are the latent's patches in row-major order, their number and the attention cost
follow from the patch size, and the explorer redraws when the patch or image size moves."""

import numpy as np
import pytest
import torch

from course_utils.attention import block_macs
from course_utils.data import to_float
from course_utils.explorers import patch_explorer, patch_view
from course_utils.patchify import unpatchify
from course_utils.vae import load_vae, psnr


def random_latent(side: int) -> torch.Tensor:
    return torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(side))


def test_patch_view_counts_tokens_attention_entries_and_flops():
    view = patch_view(2, np.zeros((32, 32, 3), np.uint8), random_latent(8))
    assert view["n_tokens"] == 16 and view["tokens"].shape == (16, 2 * 2 * 4) and view["grid"] == 4
    assert view["attention_entries"] == 16 * 16
    assert view["gflops"] == pytest.approx(12 * block_macs(16, 384) / 1e9)
    assert "tokens: 4x4 = 16" in view["text"] and "256 entries" in view["text"]
    assert "latent 4x8x8" in view["text"] and "covers 8x8 image pixels" in view["text"]
    big = patch_view(2, np.zeros((64, 64, 3), np.uint8), random_latent(16))
    assert big["n_tokens"] == 64 and big["gflops"] > 4 * view["gflops"]


@pytest.mark.parametrize("p", [1, 2, 4])
def test_patch_view_tokens_are_the_latent_patches_in_row_major_order(p):
    latent = random_latent(8)
    tokens = torch.from_numpy(patch_view(p, np.zeros((32, 32, 3), np.uint8), latent)["tokens"])
    grid = 8 // p
    second_row_first = latent[0, :, p : 2 * p, :p].permute(1, 2, 0).flatten()  # (patch row, patch column, channel)
    assert torch.equal(tokens[grid], second_row_first)
    assert torch.equal(unpatchify(tokens[None], p, grid, grid, 4), latent)


def test_patch_explorer_shows_the_example_image_and_its_latent():
    view = patch_explorer().view
    images = to_float(torch.from_numpy(view["image"]).permute(2, 0, 1)[None].contiguous())
    assert psnr(images, load_vae().decode(torch.from_numpy(view["latent"])[None])) > 25


def test_patch_explorer_redraws_when_the_patch_size_moves():
    explorer = patch_explorer(patch_size=2)
    first = explorer.image.value
    explorer.controls["patch_size"].value = 1
    assert "tokens: 8x8 = 64" in explorer.text.value and explorer.image.value != first
    assert explorer.figure.axes[2].get_title() == "(c) 64 tokens x 4 features"
    assert len(explorer.figure.axes[0].lines) == 2 * 7  # 7 horizontal and 7 vertical grid lines
    assert list(explorer.controls["patch_size"].options) == [1, 2, 4, 8]


def test_patch_explorer_switches_to_the_larger_image():
    explorer = patch_explorer(patch_size=2)
    explorer.controls["image_size"].value = 64
    assert explorer.view["image"].shape == (64, 64, 3) and explorer.view["latent"].shape == (4, 16, 16)
    assert "image 64x64 -> latent 4x16x16" in explorer.view["text"] and "tokens: 8x8 = 64" in explorer.text.value
