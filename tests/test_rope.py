import math

import numpy as np
import pytest
import torch

import course_utils.patchify as patchify_mod
from course_utils.attention import Attention
from course_utils.data import Tokenizer
from course_utils.dit import dit_tiny
from course_utils.mmdit import mmdit_small
from course_utils.rope import (
    POSITIONS,
    AxialRoPE,
    MixedRoPE,
    apply_rope,
    axial_angles,
    grid_positions,
    mixed_angles,
    mixed_frequencies,
    off_axis_degrees,
    rope_angles_1d,
    rope_frequencies,
    with_unrotated,
)


def complex_rope(x, angles):
    """Independent RoPE: interleaved pairs as complex numbers, multiplied by e^(i angle)."""
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], -1, 2).contiguous())
    return torch.view_as_real(z * torch.polar(torch.ones_like(angles.double()), angles.double())).flatten(-2)


def scores(q, k, angles_q, angles_k):
    """q.k after rotating q and k by their own angles; q, k (d,), angles (d/2,)."""
    return (apply_rope(q[None], angles_q[None]) * apply_rope(k[None], angles_k[None])).sum().item()


def test_apply_rope_equals_complex_multiplication_and_preserves_norms():
    torch.manual_seed(0)
    x, angles = torch.randn(2, 3, 7, 16), torch.rand(7, 8) * 20
    rotated = apply_rope(x, angles)
    assert torch.allclose(rotated.double(), complex_rope(x, angles), atol=1e-5)
    assert torch.allclose(rotated.norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert torch.allclose(rotated.unflatten(-1, (8, 2)).norm(dim=-1), x.unflatten(-1, (8, 2)).norm(dim=-1), atol=1e-5)


def test_1d_frequencies_follow_roformer():
    assert torch.allclose(rope_frequencies(8, 10_000.0), torch.tensor([1.0, 0.1, 0.01, 0.001]))
    assert torch.equal(rope_angles_1d(torch.tensor([0.0, 3.0]), 4, 100.0), torch.tensor([[0.0, 0.0], [3.0, 0.3]]))


def test_1d_scores_depend_only_on_the_offset():
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        q, k = torch.randn(2, 32, generator=gen)
        m, n, shift = torch.randint(-50, 50, (3,), generator=gen).float()
        angles = rope_angles_1d(torch.stack([m, n, m + shift, n + shift]), 32)
        assert scores(q, k, angles[0], angles[1]) == pytest.approx(scores(q, k, angles[2], angles[3]), abs=1e-3)
    q, k = torch.randn(2, 32, generator=gen)
    angles = rope_angles_1d(torch.arange(3.0), 32)
    assert abs(scores(q, k, angles[0], angles[1]) - scores(q, k, angles[0], angles[2])) > 1e-3  # offset matters


@pytest.mark.parametrize("kind", ["axial", "mixed"])
def test_2d_scores_depend_only_on_the_relative_offset(kind):
    torch.manual_seed(2)
    h = w = 9
    angles = axial_angles(h, w, 16) if kind == "axial" else mixed_angles(h, w, mixed_frequencies(16, 1))[0]
    pos = grid_positions(h, w).long().tolist()
    index = {tuple(p): i for i, p in enumerate(pos)}
    q, k = torch.randn(2, 16)
    cases = [((0, 0), (3, 5), (2, 1)), ((4, 2), (1, 7), (3, -1)), ((8, 8), (5, 8), (-5, -8))]
    for (r1, c1), (r2, c2), (dr, dc) in cases:
        a = scores(q, k, angles[index[r1, c1]], angles[index[r2, c2]])
        b = scores(q, k, angles[index[r1 + dr, c1 + dc]], angles[index[r2 + dr, c2 + dc]])
        assert a == pytest.approx(b, abs=1e-4)


def test_axial_is_two_1d_rotations_on_the_channel_halves():
    torch.manual_seed(3)
    x = torch.randn(2, 4, 5 * 6, 16)
    rows, cols = torch.arange(5).repeat_interleave(6).double(), torch.arange(6).repeat(5).double()
    freqs = 100.0 ** (-torch.arange(4, dtype=torch.float64) / 4)  # 1D RoPE on 8 channels, theta 100
    expected = torch.cat([complex_rope(x[..., :8], rows[:, None] * freqs),
                          complex_rope(x[..., 8:], cols[:, None] * freqs)], -1)
    assert torch.allclose(apply_rope(x, AxialRoPE(16)(5, 6)).double(), expected, atol=1e-5)


def test_mixed_with_axis_aligned_frequencies_equals_axial():
    mag = 100.0 ** (-torch.arange(4.0) / 4)
    zero = torch.zeros(4)
    aligned = torch.stack([torch.cat([mag, zero]), torch.cat([zero, mag])], dim=-1)  # (pairs, (f_row, f_col))
    rope = MixedRoPE(16, heads=2, layers=3)
    with torch.no_grad():
        rope.freqs.copy_(aligned.expand_as(rope.freqs))
    angles = rope(4, 7)
    assert angles.shape == (3, 2, 28, 8)
    assert torch.allclose(angles, axial_angles(4, 7, 16).expand_as(angles), atol=1e-6)
    axis_aligned = mixed_frequencies(16, 2, theta=100.0, directions=torch.zeros(2))
    assert torch.allclose(axis_aligned, aligned.expand(2, 8, 2), atol=1e-6)


def test_axial_score_map_is_separable_and_a_diagonal_mixed_one_is_not():
    """With q = k = ones, axial scores are f(dr) + g(dc): they cannot single out a diagonal direction."""
    h = w = 7
    ones = torch.ones(h * w, 16)

    def score_map(angles):
        return (apply_rope(ones, angles) * apply_rope(ones, angles)[24]).sum(-1).reshape(h, w).double()

    def residual(s):  # what is left after removing the best row + column decomposition
        return (s - s.mean(1, keepdim=True) - s.mean(0, keepdim=True) + s.mean()).abs().max().item()

    diagonal = mixed_frequencies(16, 1, theta=100.0, directions=torch.tensor([math.pi / 4]))
    assert residual(score_map(axial_angles(h, w, 16))) < 1e-4
    assert residual(score_map(mixed_angles(h, w, diagonal)[0])) > 0.5


def test_off_axis_degrees_folds_each_vector_onto_the_nearest_axis():
    """Against an independent computation: the complex number f_row + i f_col's argument in float64, folded by hand."""
    freqs = torch.randn(3, 5, 8, 2, generator=torch.Generator().manual_seed(0))
    degrees = np.degrees(np.angle(freqs[..., 0].double().numpy() + 1j * freqs[..., 1].double().numpy()))
    nearest = np.abs(degrees - 90 * np.round(degrees / 90))  # distance to the nearest multiple of 90
    assert off_axis_degrees(freqs).shape == (3, 5, 8)
    assert np.allclose(off_axis_degrees(freqs).numpy(), nearest, atol=1e-4)
    heads = mixed_frequencies(16, 5, directions=torch.deg2rad(torch.tensor([0.0, 90.0, 200.0, 45.0, -30.0])))
    expected = torch.tensor([0.0, 0.0, 20.0, 45.0, 30.0])[:, None].expand(5, 8)  # both halves of a head alike
    assert torch.allclose(off_axis_degrees(heads), expected, atol=1e-4)


def test_mixed_frequencies_are_per_layer_per_head_and_learnable():
    torch.manual_seed(4)
    rope = MixedRoPE(16, heads=4, layers=2)
    assert rope.freqs.shape == (2, 4, 8, 2)
    directions = torch.atan2(rope.freqs[..., 0, 1], rope.freqs[..., 0, 0])  # (layers, heads)
    assert directions.unique().numel() == 8  # a random direction for every head of every layer
    rope(3, 3).sum().backward()
    assert rope.freqs.grad is not None and rope.freqs.grad.abs().sum() > 0


def test_bad_head_dimensions_are_clear_errors():
    with pytest.raises(ValueError, match="head dimension must be even, got 7"):
        rope_angles_1d(torch.arange(3), 7)
    with pytest.raises(ValueError, match="divisible by 4, got 6"):
        AxialRoPE(6)
    with pytest.raises(ValueError, match="divisible by 4, got 10"):
        MixedRoPE(10, heads=2)
    with pytest.raises(ValueError, match="half the channels"):
        apply_rope(torch.randn(1, 5, 8), torch.randn(5, 3))


def test_attention_with_rope_equals_an_explicit_softmax_over_rotated_queries_and_keys():
    torch.manual_seed(5)
    attn, x, angles = Attention(32, 4), torch.randn(2, 6, 32), torch.rand(4, 6, 4) * 6
    q = attn.q(x).reshape(2, 6, 4, 8).transpose(1, 2)
    k, v = attn.kv(x).reshape(2, 6, 2, 4, 8).permute(2, 0, 3, 1, 4)
    q, k = complex_rope(q, angles).float(), complex_rope(k, angles).float()
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), dim=-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 6, 32))
    assert torch.allclose(attn(x, rope=angles), expected, atol=1e-5)
    with pytest.raises(ValueError, match="self-attention"):
        attn(x, context=torch.randn(2, 3, 32), rope=angles)


@pytest.mark.parametrize("pos", POSITIONS)
def test_dit_position_variants_run_at_any_grid_size(pos):
    torch.manual_seed(6)
    cond = Tokenizer().encode(["a red circle above a blue square", "two small red circles"])
    for conditioning in ("in_context", "adaln_zero"):
        model = dit_tiny(conditioning, pos=pos)
        torch.nn.init.normal_(model.final_layer.linear.weight)  # a non-zero output, so it can differ
        for size in (8, 16, 12):
            x = torch.randn(2, 4, size, size)
            assert model(x, torch.rand(2), cond).shape == x.shape
    with pytest.raises(ValueError, match=r"patch size 2 must divide .* 9x9"):
        model(torch.randn(2, 4, 9, 9), torch.rand(2), cond)


def test_rope_models_never_call_the_sine_cosine_table(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the absolute sine-cosine table was used")

    monkeypatch.setattr(patchify_mod, "sincos_pos_embed_2d", forbidden)
    cond = Tokenizer().encode(["two small red circles"])
    x, t = torch.randn(1, 4, 8, 8), torch.rand(1)
    for pos in ("rope_axial", "rope_mixed", "none"):
        dit_tiny(pos=pos)(x, t, cond)
        dit_tiny("in_context", pos=pos)(x, t, cond)
        mmdit_small(depth=1, pos=pos)(x, t, cond)
    with pytest.raises(AssertionError, match="table was used"):  # the patch is live: absolute models call it
        dit_tiny(pos="absolute")(x, t, cond)


def test_rope_dit_learns_nothing_extra_for_axial_and_one_direction_set_per_layer_for_mixed():
    axial, mixed, absolute = dit_tiny(pos="rope_axial"), dit_tiny(pos="rope_mixed"), dit_tiny(pos="absolute")
    assert sum(p.numel() for p in axial.parameters()) == sum(p.numel() for p in absolute.parameters())
    assert mixed.rope.freqs.shape == (4, 4, 16, 2)  # depth, heads, pairs of a 32-channel head, (f_row, f_col)
    angles = mixed.embed_patches(torch.randn(1, 4, 8, 8))[1]
    assert len(angles) == 4 and not torch.equal(angles[0], angles[1])
    with pytest.raises(ValueError, match="pos must be one of"):
        dit_tiny(pos="learned")


def test_tokens_without_a_grid_position_are_not_rotated():
    angles = torch.randn(6, 4)  # 6 positioned tokens, 4 pairs
    turns = with_unrotated(angles, 3)
    assert turns.shape == (6 + 3, 4) and turns.is_complex()
    x = torch.randn(2, 9, 8)
    rotated = apply_rope(x, turns)
    assert torch.equal(rotated[:, 6:], x[:, 6:])  # the 3 extra tokens pass unchanged
    assert torch.allclose(rotated[:, :6], apply_rope(x[:, :6], angles), atol=1e-6)
