"""Lesson 03's exercises: unpatchify by hand, the attention share of a block's compute, a position-blind ViT, and
what patch size 1 costs."""

import torch

from ..attention import ViTBlock, block_macs
from ..dit import dit_tiny
from ..patchify import patchify, unpatchify
from .base import Wrong, call, exercise, ratio


@exercise("03.1", "unpatchify_by_hand", "undo patchify_by_hand step by step in reverse: reshape the tokens to (b, grid "
          "row, grid col, patch row, patch col, c), permute to (b, c, grid row, patch row, grid col, patch col), and "
          "reshape to (b, c, h * p, w * p).")
def check_unpatchify_by_hand(unpatchify_by_hand):
    gen = torch.Generator().manual_seed(0)
    for p, (c, height, width) in [(2, (4, 8, 8)), (1, (4, 8, 8)), (4, (4, 8, 8)), (2, (3, 4, 8))]:
        x = torch.randn(2, c, height, width, generator=gen)
        h, w = height // p, width // p
        got = call(unpatchify_by_hand, patchify(x, p), p, h, w, c)
        if not isinstance(got, torch.Tensor) or got.shape != x.shape:
            raise Wrong(f"for p = {p} and a latent {tuple(x.shape)} you returned "
                        f"{getattr(got, 'shape', type(got).__name__)}; expected the shape {tuple(x.shape)}.")
        if not torch.equal(got, unpatchify(patchify(x, p), p, h, w, c)):
            raise Wrong(f"for p = {p} and a latent {tuple(x.shape)} the shape is right but the numbers are in the "
                        f"wrong places: check the order of the permute (a token is (patch row, patch col, channel)).")
    return "it inverts patchify exactly for p = 1, 2, 4 and a non-square latent, like the package's unpatchify."


CASES = {"S/1 on our 8x8 latent": (64, 384), "S/2 on our 8x8 latent": (16, 384), "XL/2 in the DiT paper": (256, 1152),
         "XL/2 on a 512 px image": (1024, 1152)}


@exercise("03.2", "attention_share", "a block's multiply-accumulates are 4 N D^2 (q, k, v, output), 2 N^2 D (scores "
          "and weighted sum) and 8 N D^2 (the MLP, ratio 4). The share is the N^2 term over the total.")
def check_attention_share(attention_share):
    for name, (n, d) in CASES.items():
        got, expected = call(attention_share, n, d), 2 * n * n * d / block_macs(n, d)
        if not isinstance(got, (int, float)) or abs(got - expected) > 1e-6:
            raise Wrong(f"attention_share({n}, {d}) ({name}) = {got!r}; expected {expected:.4f}.")
    shares = ", ".join(f"{name} (N = {n}, D = {d}): {2 * n / (2 * n + 12 * d):.1%}" for name, (n, d) in CASES.items())
    return (f"{shares}. The N^2 term is 2N / (2N + 12D) of a block: small while N is much less than 6D, which is why "
            f"the DiT paper could count Gflops as if they grew linearly in the tokens.")


@exercise("03.3", "permute_patches", "patchify the latent, index the token axis with perm, and unpatchify with the "
          "same grid.")
def check_permute_patches(permute_patches):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 8, 8, generator=gen)
    for p in (1, 2, 4):
        perm = torch.randperm((8 // p) ** 2, generator=gen)
        got = call(permute_patches, x, perm, p)
        if not isinstance(got, torch.Tensor) or got.shape != x.shape:
            raise Wrong(f"for p = {p} you returned {getattr(got, 'shape', type(got).__name__)}; expected a latent of "
                        f"the input's shape {tuple(x.shape)}.")
        if not torch.equal(patchify(got, p), patchify(x, p)[:, perm]):
            raise Wrong(f"for p = {p}, patch k of your result is not patch perm[k] of the input.")
    torch.manual_seed(0)
    blocks = torch.nn.Sequential(*[ViTBlock(16, heads=2) for _ in range(2)]).eval()
    f = lambda z: unpatchify(blocks(patchify(z, 2)), 2, 4, 4, 4)  # noqa: E731  (a ViT without positions)
    perm = torch.randperm(16, generator=gen)
    with torch.no_grad():
        gap = (f(call(permute_patches, x, perm, 2)) - call(permute_patches, f(x), perm, 2)).abs().max().item()
    return (f"a ViT without positions commutes with it: f(permute(x)) - permute(f(x)) is at most {gap:.1e}. Shuffle "
            f"the noise's patches and the model shuffles its answer the same way: it cannot tell 'top left' from "
            f"'bottom right' except through the noise itself.")


@exercise("03.4", "gflops_ratio", "build dit_tiny(patch_size=1) and dit_tiny() and divide their gflops(). The tokens "
          "go from 16 to 64, and a block's cost is linear in N except for its N^2 attention term.")
def check_gflops_ratio(gflops_ratio):
    expected = dit_tiny(patch_size=1).gflops() / dit_tiny().gflops()
    ratio(gflops_ratio, expected, "the ratio of the two models' gflops(); it is between 4 and 16")
    return (f"patch 1 costs {expected:.2f}x the Gflops of patch 2 for nearly the same parameters: 4x the tokens, "
            f"and a little more for the attention's N^2 term. Patch size is the DiT paper's cheapest way to buy "
            f"compute.")
