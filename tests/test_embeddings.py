import pytest
import torch

from course_utils.data import Tokenizer
from course_utils.embeddings import CaptionEmbedder, TimestepEmbedder, null_caption, timestep_embedding


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
