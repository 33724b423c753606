import pytest
import torch
import torch.nn as nn

from course_utils.attention import ViTBlock
from course_utils.patchify import PatchEmbed, patchify, sincos_pos_embed_2d, unpatchify


@pytest.mark.parametrize("shape,p", [((2, 4, 8, 8), 1), ((2, 4, 8, 8), 2), ((1, 4, 8, 8), 4), ((3, 4, 16, 12), 4),
                                     ((1, 3, 32, 32), 8)])
def test_unpatchify_inverts_patchify_exactly(shape, p):
    x = torch.randn(shape)
    b, c, h, w = shape
    tokens = patchify(x, p)
    assert tokens.shape == (b, (h // p) * (w // p), p * p * c)
    assert torch.equal(unpatchify(tokens, p, h // p, w // p, c), x)


def test_token_order_is_row_major_with_features_row_column_channel():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    tokens = patchify(x, 2)
    # token 1 is the patch in grid row 0, column 1; its features run (patch row, patch column, channel)
    expected = torch.tensor([x[0, c, i, 2 + j] for i in range(2) for j in range(2) for c in range(2)])
    assert torch.equal(tokens[0, 1], expected)


def test_patch_size_that_does_not_divide_is_a_clear_error():
    with pytest.raises(ValueError, match=r"patch size 3 must divide .* 8x8; allowed patch sizes here: \[1, 2, 4, 8\]"):
        patchify(torch.randn(1, 4, 8, 8), 3)
    with pytest.raises(ValueError, match="unpatchify expects tokens"):
        unpatchify(torch.randn(1, 16, 16), 2, 4, 3, 4)


def test_patch_embed_equals_a_strided_convolution_with_the_same_weights():
    torch.manual_seed(0)
    embed = PatchEmbed(2, 4, 32)
    conv = nn.Conv2d(4, 32, kernel_size=2, stride=2)
    with torch.no_grad():
        # the linear weight's input axis is ordered (patch row, patch column, channel)
        conv.weight.copy_(embed.proj.weight.view(32, 2, 2, 4).permute(0, 3, 1, 2))
        conv.bias.copy_(embed.proj.bias)
    x = torch.randn(2, 4, 8, 8)
    expected = conv(x).flatten(2).transpose(1, 2)  # (B, N, 32), row-major
    assert torch.allclose(embed(x), expected, atol=1e-5)


def test_sincos_embedding_halves_encode_row_and_column():
    pe = sincos_pos_embed_2d(16, 3, 4)
    assert pe.shape == (12, 16)
    rows, cols = pe[:, :8], pe[:, 8:]
    assert torch.equal(rows[0], rows[3]) and not torch.equal(rows[0], rows[4])  # same row -> same first half
    assert torch.equal(cols[0], cols[4]) and not torch.equal(cols[0], cols[1])  # same column -> same second half
    assert torch.allclose(rows[0, :4], torch.zeros(4)) and torch.allclose(rows[0, 4:], torch.ones(4))  # sin 0, cos 0
    assert len({tuple(v.tolist()) for v in pe}) == 12  # every position distinct
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_pos_embed_2d(6, 2, 2)


def test_transformer_without_position_is_permutation_equivariant_and_with_it_is_not():
    torch.manual_seed(0)
    blocks = nn.Sequential(ViTBlock(32, 4), ViTBlock(32, 4)).eval()
    x = torch.randn(2, 16, 32)
    perm = torch.randperm(16)
    assert torch.allclose(blocks(x)[:, perm], blocks(x[:, perm]), atol=1e-5)
    pe = sincos_pos_embed_2d(32, 4, 4)
    with_pos = blocks(x + pe)[:, perm]
    shuffled = blocks(x[:, perm] + pe)
    assert not torch.allclose(with_pos, shuffled, atol=1e-3)
