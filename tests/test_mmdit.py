import math

import pytest
import torch
import torch.nn.functional as F
from flops import math_attention
from torch.utils.flop_counter import FlopCounterMode

from course_utils.data import Tokenizer
from course_utils.mmdit import JointAttention, MMDiTBlock, MMDiTConfig, TextEncoder, mmdit_small
from course_utils.rope import POSITIONS

TOK = Tokenizer()


def captions(*texts):
    return TOK.encode(list(texts))


def trained_like(model):
    """Give the zero-initialised modulation and output layers weights, as training would."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "modulation" in name or "final" in name:
                p.normal_(0, 0.05)
    return model.eval()


def rotate(x, angles):
    """Independent RoPE on interleaved pairs, as complex multiplication."""
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], -1, 2).contiguous())
    return torch.view_as_real(z * torch.exp(1j * angles.double())).flatten(-2)


def test_joint_attention_equals_an_independent_computation():
    torch.manual_seed(0)
    attn = JointAttention(32, 4, qk_norm=True)
    with torch.no_grad():
        for norm in (attn.q_norm_x, attn.k_norm_x, attn.q_norm_c, attn.k_norm_c):
            norm.weight.uniform_(0.5, 1.5)
    x, c, angles = torch.randn(2, 6, 32), torch.randn(2, 5, 32), torch.rand(6, 4) * 5
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])

    def heads(t, linear):  # (B, n, 32) -> q, k, v each (B, 4, n, 8), in float64
        return [u.reshape(t.shape[0], t.shape[1], 4, 8).transpose(1, 2).double() for u in linear(t).split(32, -1)]

    def rms(u, weight):
        return u / torch.sqrt(u.pow(2).mean(-1, keepdim=True) + 1e-6) * weight.double()

    qx, kx, vx = heads(x, attn.qkv_x)
    qc, kc, vc = heads(c, attn.qkv_c)
    qx, kx = rotate(rms(qx, attn.q_norm_x.weight), angles), rotate(rms(kx, attn.k_norm_x.weight), angles)
    qc, kc = rms(qc, attn.q_norm_c.weight), rms(kc, attn.k_norm_c.weight)
    q, k, v = torch.cat([qx, qc], 2), torch.cat([kx, kc], 2), torch.cat([vx, vc], 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(8)
    allowed = torch.cat([torch.ones(2, 6, dtype=torch.bool), mask], 1)[:, None, None, :]
    out = (scores.masked_fill(~allowed, -math.inf).softmax(-1) @ v).transpose(1, 2).reshape(2, 11, 32).float()
    expected_x = F.linear(out[:, :6], attn.proj_x.weight, attn.proj_x.bias)
    expected_c = F.linear(out[:, 6:], attn.proj_c.weight, attn.proj_c.bias)
    got_x, got_c = attn(x, c, mask, angles)
    assert torch.allclose(got_x, expected_x, atol=1e-5) and torch.allclose(got_c, expected_c, atol=1e-5)
    weights = attn.attention_weights(x, c, mask, angles)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 11)) and (weights[0, :, :, 9:] == 0).all()


def test_mmdit_is_zero_and_every_block_is_the_identity_at_init():
    torch.manual_seed(0)
    model = mmdit_small()
    x, t = torch.randn(2, 4, 8, 8), torch.rand(2)
    cond = captions("two small red circles", "a red circle above a blue square")
    assert torch.equal(model(x, t, cond), torch.zeros_like(x))
    tokens, text, mask, y, angles, grid = model.encode(x, t, cond)
    for block, rope in zip(model.blocks, angles):
        out_x, out_c = block(tokens, text, y, mask, rope)
        assert torch.equal(out_x, tokens) and torch.equal(out_c, text)


def test_padding_tokens_have_no_influence_on_the_image_output():
    model = trained_like(mmdit_small())
    ids, mask = captions("a large red circle in the top left")
    noisy = ids.clone()
    noisy[~mask] = torch.randint(1, len(TOK), (int((~mask).sum()),))  # garbage words where the mask says padding
    x, t = torch.randn(1, 4, 8, 8), torch.rand(1)
    assert torch.allclose(model(x, t, (ids, mask)), model(x, t, (noisy, mask)), atol=1e-6)
    unmasked = mask.clone()
    unmasked[0, mask.sum()] = True  # one garbage word let in changes the image
    assert not torch.allclose(model(x, t, (ids, mask)), model(x, t, (noisy, unmasked)), atol=1e-4)


def test_image_output_depends_on_the_caption_through_joint_attention_alone():
    model = trained_like(mmdit_small())
    with torch.no_grad():  # cut the pooled path: the caption reaches the image only through attention
        model.pooled_embedder[-1].weight.zero_()
        model.pooled_embedder[-1].bias.zero_()
    x, t = torch.randn(1, 4, 8, 8).expand(2, -1, -1, -1), torch.rand(1).expand(2)
    v = model(x, t, captions("a red circle above a blue square", "a blue circle above a red square"))
    assert (v[0] - v[1]).abs().max() > 1e-3


def test_text_stream_reads_the_image():
    torch.manual_seed(2)
    block = MMDiTBlock(32, 4)
    torch.nn.init.normal_(block.modulation_c.lin.weight, std=0.1)
    c, y, mask = torch.randn(1, 5, 32), torch.randn(1, 32), torch.ones(1, 5, dtype=torch.bool)
    _, c1 = block(torch.randn(1, 6, 32), c, y, mask)
    _, c2 = block(torch.randn(1, 6, 32), c, y, mask)
    assert (c1 - c2).abs().max() > 1e-3


def test_text_encoder_pools_only_real_words_and_handles_the_null_caption():
    torch.manual_seed(3)
    encoder = TextEncoder(len(TOK), 12, 32, depth=2, heads=4).eval()
    ids, mask = captions("two small red circles")
    tokens, full_mask, pooled = encoder(ids, mask)
    assert tokens.shape == (1, 13, 32) and full_mask[0, 0] and full_mask.sum() == 1 + mask.sum()
    assert torch.allclose(pooled, tokens[0, full_mask[0]].mean(0, keepdim=True), atol=1e-6)
    null = encoder(torch.zeros(1, 12, dtype=torch.long), torch.zeros(1, 12, dtype=torch.bool))
    assert torch.isfinite(null[2]).all() and torch.allclose(null[2], null[0][:, 0], atol=1e-6)


def test_mmdit_runs_at_any_grid_size_with_every_position_encoding():
    cond = captions("a red circle above a blue square", "two small red circles")
    for pos in POSITIONS:
        model = trained_like(mmdit_small(dim=32, depth=2, heads=4, text_depth=1, pos=pos))
        for size in (8, 16):
            v = model(torch.randn(2, 4, size, size), torch.rand(2), cond)
            assert v.shape == (2, 4, size, size) and torch.isfinite(v).all()
    null = model.null_condition()
    assert torch.isfinite(model(torch.randn(1, 4, 8, 8), torch.rand(1), null)).all()


def test_block_macs_match_the_flop_counter():
    model = mmdit_small(dim=64, depth=1, heads=4, text_depth=1)
    x, t = torch.randn(1, 4, 8, 8), torch.rand(1)
    tokens, text, mask, y, angles, grid = model.encode(x, t, captions("two small red circles"))
    with math_attention(), FlopCounterMode(display=False) as counter:
        model.blocks[0](tokens, text, y, torch.ones_like(mask), angles[0])
    assert counter.get_total_flops() == 2 * model.gflops() * 1e9


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="pos must be one of"):
        MMDiTConfig(pos="learned")
    with pytest.raises(ValueError, match=r"layer must be in 0..0"):
        mmdit_small(dim=32, depth=1).attention_maps(torch.randn(1, 4, 8, 8), torch.rand(1),
                                                    captions("two small red circles"), 1)
    with pytest.raises(ValueError, match="divisible by heads"):
        JointAttention(30, 4)
    model = mmdit_small(dim=32, depth=1, heads=4, text_depth=1)
    with pytest.raises(ValueError, match=r"takes latents \(B, 4, H, W\)"):
        model(torch.randn(1, 3, 8, 8), torch.rand(1), captions("two small red circles"))
    with pytest.raises(ValueError, match="patch size 2 must divide"):
        model(torch.randn(1, 4, 7, 7), torch.rand(1), captions("two small red circles"))


def test_attention_maps_are_the_weights_the_layer_mixes_its_values_with():
    """The maps of layer 1, times the layer's values, give exactly what its joint attention outputs."""
    model = trained_like(mmdit_small(depth=2))
    x, t = torch.randn(2, 4, 8, 8), torch.rand(2)
    ids, mask = captions("a red circle above a blue square", "two small red circles")
    maps = model.attention_maps(x, t, (ids, mask), 1)
    tokens, text, full_mask, y, angles, grid = model.encode(x, t, (ids, mask))
    tokens, text = model.blocks[0](tokens, text, y, full_mask, angles[0])
    x_in, c_in, _, _ = model.blocks[1].attention_inputs(tokens, text, y)
    attn = model.blocks[1].attn
    _, _, v, _ = attn.qkv(x_in, c_in, full_mask, angles[1])
    mixed = (maps.weights @ v).transpose(1, 2).flatten(2)  # (B, N + M, D)
    out_x, out_c = attn(x_in, c_in, full_mask, angles[1])
    assert torch.allclose(attn.proj_x(mixed[:, :16]), out_x, atol=1e-5)
    assert torch.allclose(attn.proj_c(mixed[:, 16:]), out_c, atol=1e-5)
    assert grid == (4, 4) and maps.weights.shape == (2, 4, 29, 29)
    assert torch.allclose(maps.weights.sum(-1), torch.ones(2, 4, 29), atol=1e-5)
    words = int(mask[1].sum())  # "two small red circles": 4 words; the rest is padding, never attended to
    assert (maps.weights[1, :, :, 16 + 1 + words :] == 0).all()
    share = maps.patches_to_word(2)  # the word "red" of the first caption
    assert share.shape == (2, 4, 4) and torch.allclose(share[0].flatten(), maps.weights[0].mean(0)[:16, 19])
