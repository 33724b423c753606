import math

import pytest
import torch
import torch.nn.functional as F
from flops import math_attention
from torch.utils.flop_counter import FlopCounterMode

from course_utils.attention import Attention, Mlp, RMSNorm, ViTBlock, block_macs


def reference_attention(attn, x, context=None, mask=None):
    """Multi-head attention written out in float64: softmax(q k^T / sqrt(d)) v per head, masked keys excluded."""
    source = x if context is None else context
    h = attn.heads
    q = attn.q(x).double().unflatten(-1, (h, -1)).transpose(1, 2)  # (B, h, N, d)
    k, v = attn.kv(source).double().chunk(2, dim=-1)
    k, v = (z.unflatten(-1, (h, -1)).transpose(1, 2) for z in (k, v))  # (B, h, M, d)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).flatten(2)  # (B, N, D)
    return attn.proj(out.float())


def test_self_attention_equals_a_written_out_float64_computation():
    torch.manual_seed(0)
    attn = Attention(32, 4)
    x = torch.randn(2, 7, 32)
    assert torch.allclose(attn(x), reference_attention(attn, x), atol=1e-5)


def test_cross_attention_reads_only_the_unmasked_context():
    torch.manual_seed(1)
    attn = Attention(32, 4, context_dim=16)
    x, context = torch.randn(2, 5, 32), torch.randn(2, 6, 16)
    mask = torch.tensor([[True] * 6, [True, True, True, False, False, False]])
    out = attn(x, context, mask)
    assert torch.allclose(out, reference_attention(attn, x, context, mask), atol=1e-5)
    changed = context.clone()
    changed[1, 3:] = torch.randn(3, 16)  # masked keys: changing them changes nothing
    assert torch.allclose(attn(x, changed, mask)[1], out[1], atol=1e-6)


def test_rms_norm_divides_by_the_root_mean_square_and_applies_its_gain():
    norm = RMSNorm(8)
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, 9.0))
    x = torch.randn(3, 8)
    expected = x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt() * torch.arange(1.0, 9.0)
    assert torch.allclose(norm(x), expected, atol=1e-6)


def test_mlp_is_two_linear_layers_around_a_tanh_gelu():
    torch.manual_seed(2)
    mlp = Mlp(8, mlp_ratio=2.0)
    x = torch.randn(4, 8)
    assert mlp.fc1.out_features == 16
    assert torch.allclose(mlp(x), mlp.fc2(F.gelu(mlp.fc1(x), approximate="tanh")))


def test_vit_block_is_pre_norm_residual():
    torch.manual_seed(3)
    block = ViTBlock(16, 2)
    x = torch.randn(2, 5, 16)
    mid = x + block.attn(block.norm1(x))
    assert torch.allclose(block(x), mid + block.mlp(block.norm2(mid)), atol=1e-6)


def test_attention_rejects_a_width_the_heads_do_not_divide():
    with pytest.raises(ValueError, match="divisible by heads"):
        Attention(30, 4)


@pytest.mark.parametrize("tokens,dim,heads", [(16, 64, 4), (64, 96, 6), (4, 384, 6)])
def test_block_macs_match_torch_flop_counter(tokens, dim, heads):
    block = ViTBlock(dim, heads)
    # the math backend runs attention as plain matmuls, which the counter sees (fused CPU kernels it may not)
    with math_attention(), FlopCounterMode(display=False) as counter:
        block(torch.randn(1, tokens, dim))
    assert counter.get_total_flops() == 2 * block_macs(tokens, dim)  # torch counts a multiply-add as 2 flops
