import pytest
import torch
import torch.nn.functional as F
from flops import math_attention
from torch.utils.flop_counter import FlopCounterMode

from course_utils.adaln import AdaLN, AdaLNBlock, modulate
from course_utils.attention import block_macs
from course_utils.data import Tokenizer
from course_utils.dit import CONDITIONINGS, CrossAttentionBlock, DiT, dit_tiny
from course_utils.train import train

TOK = Tokenizer()


def captions(*texts):
    return TOK.encode(list(texts))


def test_modulate_formula_and_zero_modulation_is_plain_layer_norm():
    x, shift, scale = torch.randn(2, 5, 8), torch.randn(2, 8), torch.randn(2, 8)
    assert torch.allclose(modulate(x, shift, scale), x * (1 + scale[:, None]) + shift[:, None])
    assert torch.equal(modulate(x, torch.zeros(2, 8), torch.zeros(2, 8)), x)
    ada = AdaLN(8, 16)
    torch.nn.init.zeros_(ada.modulation[-1].weight)
    torch.nn.init.zeros_(ada.modulation[-1].bias)
    assert torch.allclose(ada(x, torch.randn(2, 16)), F.layer_norm(x, (8,), eps=1e-6), atol=1e-6)


def test_adaln_zero_dit_is_zero_and_every_block_is_the_identity_at_init():
    torch.manual_seed(0)
    model = dit_tiny("adaln_zero")
    cond = captions("two small red circles", "a red circle above a blue square", "a large blue square in the center")
    x, t = torch.randn(3, 4, 8, 8), torch.rand(3)
    assert torch.equal(model(x, t, cond), torch.zeros_like(x))
    tokens, c = torch.randn(3, 16, 128), torch.randn(3, 128)
    for block in model.blocks:
        assert torch.equal(block(tokens, c), tokens)


def test_plain_adaln_blocks_are_not_the_identity_at_init():
    model = dit_tiny("adaln")
    tokens, c = torch.randn(2, 16, 128), torch.randn(2, 128)
    assert not torch.allclose(model.blocks[0](tokens, c), tokens)
    assert set(model.blocks[0].modulation_params(c)) == {"shift_msa", "scale_msa", "gate_msa", "shift_mlp",
                                                         "scale_mlp", "gate_mlp"}


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_every_variant_keeps_the_shape_and_learns_to_use_the_caption(conditioning):
    torch.manual_seed(0)
    model = dit_tiny(conditioning, dim=64, depth=2)
    # toy data: the latent's sign is set by the caption
    texts = ["a large red circle in the center", "a large blue square in the center"]
    ids, mask = captions(*texts)
    labels = torch.randint(2, (256,), generator=torch.Generator().manual_seed(0))
    latents = torch.where(labels[:, None, None, None] == 0, 1.0, -1.0) * torch.ones(256, 4, 8, 8)
    train(model, latents, (ids[labels], mask[labels]), steps=40, batch_size=64, lr=3e-3, warmup=1)
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


def test_adaln_block_macs_match_the_flop_counter():
    block = AdaLNBlock(64, 4, 64)
    with math_attention(), FlopCounterMode(display=False) as counter:
        block(torch.randn(1, 16, 64), torch.randn(1, 64))
    assert counter.get_total_flops() == 2 * (block_macs(16, 64) + 64 * 6 * 64)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="conditioning must be one of"):
        DiT("concat")
    with pytest.raises(ValueError, match=r"takes latents \(B, 4, H, W\), got \(1, 3, 8, 8\)"):
        dit_tiny()(torch.randn(1, 3, 8, 8), torch.rand(1), captions("two small red circles"))
