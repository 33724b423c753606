import pytest
import torch
import torch.nn.functional as F
from flops import math_attention
from torch.utils.flop_counter import FlopCounterMode

from course_utils.adaln import AdaLN, AdaLNZeroBlock, FinalLayer, Modulation, ModulationOut, gated_residual, modulate
from course_utils.attention import block_macs


def test_modulate_scales_then_shifts_every_token_per_channel():
    x, shift, scale = torch.randn(2, 5, 8), torch.randn(2, 8), torch.randn(2, 8)
    out = modulate(x, shift, scale)
    for b in range(2):
        for n in range(5):
            assert torch.allclose(out[b, n], x[b, n] * (1 + scale[b]) + shift[b])
    assert torch.equal(modulate(x, torch.zeros(2, 8), torch.zeros(2, 8)), x)


def test_modulation_splits_one_linear_layer_into_named_branches():
    torch.manual_seed(0)
    mod = Modulation(4, 6, branches=2, gated=True)
    c = torch.randn(3, 6)
    raw = mod.lin(F.silu(c))  # (3, 24): shift, scale, gate of the attention branch, then of the MLP branch
    msa, mlp = mod(c)
    assert isinstance(msa, ModulationOut)
    assert torch.equal(msa.shift, raw[:, 0:4]) and torch.equal(msa.gate, raw[:, 8:12])
    assert torch.equal(mlp.shift, raw[:, 12:16]) and torch.equal(mlp.scale, raw[:, 16:20])
    (final,) = Modulation(4, 6, branches=1, gated=False)(c)
    assert final.gate is None and final.shift.shape == (3, 4)


def test_gated_residual_adds_the_branch_scaled_per_channel_and_none_means_ungated():
    x, branch, gate = torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(2, 4)
    assert torch.equal(gated_residual(x, branch, None), x + branch)
    assert torch.allclose(gated_residual(x, branch, gate)[1, 2], x[1, 2] + gate[1] * branch[1, 2])


def test_adaln_with_zero_modulation_is_plain_layer_norm():
    ada = AdaLN(8, 16)
    torch.nn.init.zeros_(ada.modulation.lin.weight)
    torch.nn.init.zeros_(ada.modulation.lin.bias)
    x = torch.randn(2, 5, 8)
    assert torch.allclose(ada(x, torch.randn(2, 16)), F.layer_norm(x, (8,), eps=1e-6), atol=1e-6)


def test_adaln_zero_block_is_identity_when_its_modulation_is_zero():
    block = AdaLNZeroBlock(16, 4, 8)
    torch.nn.init.zeros_(block.modulation.lin.weight)
    torch.nn.init.zeros_(block.modulation.lin.bias)
    x = torch.randn(2, 5, 16)
    assert torch.equal(block(x, torch.randn(2, 8)), x)
    ungated = AdaLNZeroBlock(16, 4, 8, gated=False)
    assert ungated.modulation.lin.out_features == 4 * 16 and not torch.allclose(ungated(x, torch.randn(2, 8)), x)


def test_final_layer_is_adaln_then_a_linear_map_per_token():
    torch.manual_seed(0)
    layer = FinalLayer(16, 12, 8)
    x, c = torch.randn(2, 5, 16), torch.randn(2, 8)
    assert torch.equal(layer(x, c), layer.linear(layer.norm(x, c))) and layer(x, c).shape == (2, 5, 12)
    plain = FinalLayer(16, 12)  # the token-conditioned DiTs' final layer: LayerNorm, then linear
    assert torch.allclose(plain(x), plain.linear(F.layer_norm(x, (16,), plain.norm.weight,
                                                                              plain.norm.bias, 1e-6)))
    with pytest.raises(ValueError, match="plain: pass no c"):
        plain(x, c)
    with pytest.raises(ValueError, match="adaptive: pass c"):
        layer(x)


def test_adaln_zero_block_macs_match_the_flop_counter():
    block = AdaLNZeroBlock(64, 4, 64)
    with math_attention(), FlopCounterMode(display=False) as counter:
        block(torch.randn(1, 16, 64), torch.randn(1, 64))
    assert counter.get_total_flops() == 2 * (block_macs(16, 64) + 64 * 6 * 64)
