import pytest
import torch

from course_utils.data import Tokenizer
from course_utils.dit import dit_tiny
from course_utils.embeddings import CaptionEmbedder, TimestepEmbedder, null_caption, timestep_embedding
from course_utils.mmdit import mmdit_small
from course_utils.unet import unet_small


def test_timestep_embedding_matches_the_formula():
    t = torch.tensor([0.0, 0.25, 1.0])
    emb = timestep_embedding(t, 8)
    assert emb.shape == (3, 8)
    freqs = torch.tensor([10_000 ** (-i / 4) for i in range(4)])
    expected = torch.cat([torch.cos(1000 * t[:, None] * freqs), torch.sin(1000 * t[:, None] * freqs)], 1)
    assert torch.allclose(emb, expected, atol=1e-5)
    with pytest.raises(ValueError, match="even dim"):
        timestep_embedding(t, 7)


def test_nearby_times_get_distinct_embeddings():
    emb = TimestepEmbedder(32)(torch.tensor([0.50, 0.51]))
    assert emb.shape == (2, 32) and not torch.allclose(emb[0], emb[1])


def test_caption_embedding_keeps_word_order_and_ignores_padding():
    tok = Tokenizer()
    torch.manual_seed(0)
    embed = CaptionEmbedder(len(tok), tok.max_len, hidden=32)
    ids, mask = tok.encode(["a red circle above a blue square", "a blue circle above a red square"])
    pooled = embed(ids, mask)
    assert pooled.shape == (2, 32) and not torch.allclose(pooled[0], pooled[1])
    tokens = embed.tokens(ids, mask)
    assert tokens.shape == (2, tok.max_len, 64) and tokens[~mask].abs().sum() == 0


def test_null_caption_maps_to_the_learned_null_vector():
    tok = Tokenizer()
    embed = CaptionEmbedder(len(tok), tok.max_len, hidden=16)
    with torch.no_grad():
        embed.null.fill_(3.0)
    ids, mask = null_caption(tok.max_len)
    assert ids.shape == mask.shape == (1, tok.max_len) and not mask.any()
    assert torch.equal(embed(ids, mask), torch.full((1, 16), 3.0))


@pytest.mark.parametrize("build", [lambda: unet_small(), lambda: dit_tiny(depth=1), lambda: mmdit_small(depth=1)],
                         ids=["unet", "dit", "mmdit"])
def test_every_denoiser_refuses_inputs_that_break_the_contract(build):
    model = build()
    ids, mask = Tokenizer().encode(["two small red circles"] * 4)
    x, t = torch.randn(4, 4, 8, 8), torch.rand(4)
    assert model(x, t, (ids, mask)).shape == x.shape
    cases = {
        "batch of x against the captions": ((x[:1], t[:1], (ids, mask)), r"each be \(1, 12\) for x of batch 1"),
        "t of the wrong shape": ((x, t[:, None], (ids, mask)), r"t must be a float tensor of shape \(4,\)"),
        "integer t": ((x, (t * 10).long(), (ids, mask)), "t must be a float tensor"),
        "a float mask": ((x, t, (ids, mask.float())), "its mask bool"),
        "float ids": ((x, t, (ids.float(), mask)), "ids must be integers"),
        "a caption too long": ((x, t, (ids.repeat(1, 2), mask.repeat(1, 2))), r"got \(4, 24\)"),
        "three channels": ((x[:, :3], t, (ids, mask)), r"takes latents \(B, 4, H, W\)"),
        "no caption batch": ((x, t, ids), r"cond must be a caption batch \(ids, mask\)"),
    }
    for args, message in cases.values():  # the keys say what each case breaks
        with pytest.raises(ValueError, match=message):
            model(*args)


def test_a_word_token_embedder_refuses_to_pool():
    words_only = CaptionEmbedder(len(Tokenizer().vocab), 12, 32, pooled=False)
    ids, mask = torch.zeros(2, 12, dtype=torch.long), torch.ones(2, 12, dtype=torch.bool)
    assert words_only.tokens(ids, mask).shape == (2, 12, 64)
    with pytest.raises(RuntimeError, match="pooled=False"):
        words_only(ids, mask)
