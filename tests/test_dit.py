import pytest
import torch
from flops import math_attention
from torch.utils.flop_counter import FlopCounterMode

from course_utils.attention import block_macs
from course_utils.data import Tokenizer
from course_utils.dit import CONDITIONINGS, CrossAttentionBlock, DiT, DiTConfig, dit_tiny
from course_utils.train import TrainConfig, train

TOK = Tokenizer()


def captions(*texts):
    return TOK.encode(list(texts))


def test_adaln_zero_dit_is_zero_and_every_block_is_the_identity_at_init():
    torch.manual_seed(0)
    model = dit_tiny("adaln_zero")
    cond = captions("two small red circles", "a red circle above a blue square", "a large blue square in the center")
    x, t = torch.randn(3, 4, 8, 8), torch.rand(3)
    assert torch.equal(model(x, t, cond), torch.zeros_like(x))
    tokens, c = torch.randn(3, 16, 128), torch.randn(3, 128)
    for block in model.blocks:
        assert torch.equal(block(tokens, c), tokens)


def test_plain_adaln_blocks_are_not_the_identity_at_init_and_have_no_gates():
    model = dit_tiny("adaln")
    tokens, c = torch.randn(2, 16, 128), torch.randn(2, 128)
    assert not torch.allclose(model.blocks[0](tokens, c), tokens)
    msa, mlp = model.modulation(torch.rand(2), captions("two small red circles", "a blue square in the center"), 0)
    assert msa.gate is None and mlp.gate is None and msa.shift.shape == mlp.scale.shape == (2, 128)


def test_modulation_is_what_the_block_applies():
    """DiT.modulation and DiT.block_input give exactly what block `b` computes inside forward."""
    torch.manual_seed(0)
    model = dit_tiny("adaln_zero", depth=3)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x, t = torch.randn(2, 4, 8, 8), torch.rand(2)
    cond = captions("two small red circles", "a red circle above a blue square")
    tokens, c, rope = model.block_input(x, t, cond, 2)
    msa, mlp = model.modulation(t, cond, 2)
    block = model.blocks[2]
    h = block.norm1(tokens) * (1 + msa.scale[:, None]) + msa.shift[:, None]
    by_hand = tokens + msa.gate[:, None] * block.attn(h)
    h = block.norm2(by_hand) * (1 + mlp.scale[:, None]) + mlp.shift[:, None]
    by_hand = by_hand + mlp.gate[:, None] * block.mlp(h)
    assert rope is None and torch.allclose(block(tokens, c), by_hand, atol=1e-6)
    with pytest.raises(ValueError, match="conditioning is 'cross_attention'"):
        dit_tiny("cross_attention").modulation(t, cond, 0)


def test_only_the_sequence_variants_have_word_tokens():
    assert not hasattr(dit_tiny("adaln_zero"), "word_proj") and not hasattr(dit_tiny("adaln"), "word_proj")
    assert hasattr(dit_tiny("in_context"), "word_proj") and hasattr(dit_tiny("cross_attention"), "word_proj")


def test_each_variant_uses_its_own_mechanism_in_the_final_layer_too():
    for conditioning in CONDITIONINGS:
        model = dit_tiny(conditioning)
        modulated = conditioning in ("adaln", "adaln_zero")
        assert model.final_layer.adaptive == modulated, conditioning
        assert isinstance(model.final_layer.norm, torch.nn.LayerNorm) != modulated, conditioning
        # the token variants read no pooled caption vector, so they carry none
        assert hasattr(model.c_embedder, "pool") == modulated, conditioning
    # the in-context output depends on the caption only through the tokens: the word tokens zeroed, it ignores it
    model = dit_tiny("in_context")
    torch.nn.init.normal_(model.final_layer.linear.weight)
    x, t = torch.randn(2, 4, 8, 8), torch.rand(2)
    with torch.no_grad():
        model.word_proj.weight.zero_(), model.word_proj.bias.zero_()
        a = model(x, t, captions("a red circle", "a red circle"))
        b = model(x, t, captions("a blue square", "a blue square"))
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_every_variant_keeps_the_shape_and_learns_to_use_the_caption(conditioning):
    torch.manual_seed(0)
    model = dit_tiny(conditioning, dim=64, depth=2)
    # toy data: the latent's sign is set by the caption
    texts = ["a large red circle in the center", "a large blue square in the center"]
    ids, mask = captions(*texts)
    labels = torch.randint(2, (256,), generator=torch.Generator().manual_seed(0))
    latents = torch.where(labels[:, None, None, None] == 0, 1.0, -1.0) * torch.ones(256, 4, 8, 8)
    train(model, latents, (ids[labels], mask[labels]), config=TrainConfig(steps=40, batch_size=64, lr=3e-3, warmup=1))
    x, t = torch.randn(2, 4, 8, 8), torch.full((2,), 0.5)
    with torch.no_grad():
        v_red = model(x, t, captions(texts[0], texts[0]))
        v_blue = model(x, t, captions(texts[1], texts[1]))
    assert v_red.shape == x.shape
    assert (v_red - v_blue).abs().mean() > 0.1, "the output must depend on the caption"


def test_cross_attention_costs_more_than_adaln_at_equal_width():
    assert dit_tiny("cross_attention").gflops() > dit_tiny("adaln_zero").gflops() > dit_tiny("adaln").gflops()
    assert dit_tiny("in_context").gflops() > dit_tiny("adaln").gflops()


def test_cross_attention_block_macs_match_the_flop_counter():
    block = CrossAttentionBlock(64, 4)
    with math_attention(), FlopCounterMode(display=False) as counter:
        block(torch.randn(1, 16, 64), torch.randn(1, 13, 64), torch.ones(1, 13, dtype=torch.bool))
    assert counter.get_total_flops() == 2 * block_macs(16, 64, context=13)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="conditioning must be one of"):
        DiTConfig(conditioning="concat")
    with pytest.raises(ValueError, match="pos must be one of"):
        dit_tiny(pos="learned")
    with pytest.raises(ValueError, match="divisible by heads"):
        DiT(DiTConfig(dim=130))
    with pytest.raises(ValueError, match=r"takes latents \(B, 4, H, W\), got \(1, 3, 8, 8\)"):
        dit_tiny()(torch.randn(1, 3, 8, 8), torch.rand(1), captions("two small red circles"))
