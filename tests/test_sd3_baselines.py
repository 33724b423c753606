import pytest
import torch

from course_utils.attention import Attention
from course_utils.data import Tokenizer
from course_utils.mmdit import mmdit_small
from course_utils.sd3_baselines import CrossDiTBlock, SharedBlock, cross_small, in_context_small

tok = Tokenizer()
CAPTIONS = ["a red circle above a blue square", "two small green triangles"]


def randomize(module):
    """Give every parameter random values (the zero-initialised gates and projections would hide the paths)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.2)
    return module


def test_tied_weights_make_the_shared_block_one_transformer_over_the_concatenated_sequence():
    block = randomize(SharedBlock(32, 4))
    x, c, y = torch.randn(2, 6, 32), torch.randn(2, 3, 32), torch.randn(2, 32)
    mask = torch.ones(2, 3, dtype=torch.bool)
    out_x, out_c = block(x, c, y, mask)
    # the same block on the concatenation as "image" tokens and no text at all gives the same numbers
    joint, empty = block(torch.cat([x, c], 1), c[:, :0], y, mask[:, :0])
    assert empty.shape == (2, 0, 32)
    assert torch.allclose(torch.cat([out_x, out_c], 1), joint, atol=1e-5)
    # the MMDiT block, with its own text weights, does not have this symmetry
    from course_utils.mmdit import MMDiTBlock

    separate = randomize(MMDiTBlock(32, 4))
    sep_x, sep_c = separate(x, c, y, mask)
    assert not torch.allclose(torch.cat([sep_x, sep_c], 1), separate(torch.cat([x, c], 1), c[:, :0], y,
                                                                     mask[:, :0])[0], atol=1e-3)


def test_the_in_context_baseline_has_only_the_text_weights_of_the_mmdit_fewer():
    shared, separate = in_context_small(), mmdit_small()
    n_shared = sum(p.numel() for p in shared.parameters())
    n_separate = sum(p.numel() for p in separate.parameters())
    per_block_text = sum(p.numel() for name, p in separate.blocks[0].named_parameters()
                         if name.endswith("_c.weight") or name.endswith("_c.bias") or "_c." in name)
    assert n_separate - n_shared == len(separate.blocks) * per_block_text
    assert shared.forward_gflops() == pytest.approx(separate.forward_gflops())  # same ops, tied weights


def test_the_cross_block_starts_as_the_identity_and_never_updates_the_text():
    block = CrossDiTBlock(32, 4)
    for m in (block.modulation_x.lin,):
        torch.nn.init.zeros_(m.weight), torch.nn.init.zeros_(m.bias)
    x, c, y = torch.randn(2, 6, 32), torch.randn(2, 3, 32), torch.randn(2, 32)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    out_x, out_c = block(x, c, y, mask)
    assert torch.equal(out_x, x) and out_c is c
    randomize(block)
    out_x, out_c = block(x, c, y, mask)
    assert out_c is c and not torch.allclose(out_x, x)
    # masked text tokens are never read
    c2 = c.clone()
    c2[0, 2], c2[1, 1:] = 5.0, -5.0
    assert torch.allclose(block(x, c2, y, mask)[0], out_x, atol=1e-6)


@pytest.mark.parametrize("build", [in_context_small, cross_small])
def test_each_baseline_predicts_zero_at_init_and_reads_the_caption_once_trained_weights_move(build):
    torch.manual_seed(0)
    model = build(depth=2)
    x, t = torch.randn(2, 4, 8, 8), torch.rand(2)
    assert torch.equal(model(x, t, tok.encode(CAPTIONS)), torch.zeros_like(x))
    randomize(model)
    with torch.no_grad():
        a = model(x, t, tok.encode(CAPTIONS))
        b = model(x, t, tok.encode(CAPTIONS[::-1]))
    assert a.shape == x.shape and (a - b).abs().mean() > 1e-3


def test_qk_norm_makes_attention_blind_to_the_scale_of_queries_and_keys():
    torch.manual_seed(0)
    attn = Attention(32, 4, qk_norm=True)
    x = torch.randn(2, 5, 32)
    before = attn(x)
    with torch.no_grad():
        attn.q.weight.mul_(7.0), attn.q.bias.mul_(7.0)
    assert torch.allclose(attn(x), before, atol=1e-5)
    plain = Attention(32, 4)
    assert isinstance(plain.q_norm, torch.nn.Identity)


@pytest.mark.parametrize("build", [in_context_small, cross_small, mmdit_small])
def test_gflops_of_the_blocks_match_the_flop_counter(build):
    from flops import math_attention
    from torch.utils.flop_counter import FlopCounterMode

    model = build()
    x, t = torch.randn(1, 4, 8, 8), torch.rand(1)
    tokens, text, mask, y, angles, _ = model.encode(x, t, model.null_condition())
    with torch.no_grad(), math_attention(), FlopCounterMode(display=False) as counter:
        for block in model.blocks:
            tokens, text = block(tokens, text, y, mask, None)
    assert model.gflops() == pytest.approx(counter.get_total_flops() / 2e9, rel=1e-9)
