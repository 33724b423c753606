"""The MMDiT attention explorer: its maps are the model's joint attention at one step of a guided sampling run
(the same weights the forward pass attends with), its picture is the decoded clean estimate, and it samples each
caption once, keeping the last picture when a typed caption has an unknown word."""

import numpy as np
import pytest
import torch

import course_utils.explorers.mmdit_attention as mmdit_attention
from course_utils.data import Tokenizer
from course_utils.explorers import mmdit_attention_explorer, mmdit_attention_view
from course_utils.flow import sample_trajectory, time_grid
from course_utils.mmdit import mmdit_small
from course_utils.vae import VAE

CAPTION = "a red circle above a blue square"


@pytest.fixture(scope="module")
def model():
    """A small random MMDiT whose modulation and output layer are not zero, as training would leave them."""
    torch.manual_seed(0)
    model = mmdit_small(depth=2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "modulation" in name or "final" in name:
                p.normal_(0, 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(1)
    return VAE().eval()  # random weights: the views need a decoder, not the shipped one


@pytest.fixture(scope="module")
def path(model):
    return sample_trajectory(model, [CAPTION], steps=6, cfg_scale=2.0, seed=3)  # (7, 1, 4, 8, 8)


def conditional_attention(model, x, t, cond, layer):
    """The weights (B, heads, N + M, N + M) that block `layer` attends with in model(x, t, cond), caught by a hook."""
    seen = {}

    def keep_inputs(module, args, out):
        seen["args"] = args

    hook = model.blocks[layer].attn.register_forward_hook(keep_inputs)
    with torch.no_grad():
        try:
            model(x, t, cond)
        finally:
            hook.remove()
        return model.blocks[layer].attn.attention_weights(*seen["args"])


def test_view_shows_the_models_attention_maps_at_the_chosen_step(model, vae, path):
    view = mmdit_attention_view(model, vae, CAPTION, word=1, step=4, layer=1, steps=6, seed=3, trajectory=path)
    maps = model.attention_maps(path[4], time_grid(6)[4][None], Tokenizer().encode([CAPTION]), layer=1)
    assert np.allclose(view["image_to_word"], maps.patches_to_word(1)[0].numpy(), atol=1e-7)
    assert np.allclose(view["word_to_image"], maps.word_to_patches(1)[0].numpy(), atol=1e-7)
    assert view["text_share"] == pytest.approx(maps.text_share()[0].item())
    assert torch.allclose(maps.weights.sum(-1), torch.ones(1), atol=1e-5)  # each attention row sums to 1


def test_maps_are_the_weights_the_forward_pass_attends_with(model, vae, path):
    x, t, cond = path[2], time_grid(6)[2][None], Tokenizer().encode([CAPTION])
    weights = conditional_attention(model, x, t, cond, layer=0).mean(1)[0]  # (N + M, N + M), mean over heads
    assert torch.allclose(weights.sum(-1), torch.ones(1), atol=1e-5)  # each attention row sums to 1
    view = mmdit_attention_view(model, vae, CAPTION, word=5, step=2, layer=0, steps=6, seed=3, trajectory=path)
    n = 16  # 4x4 patches, then the begin token, then the words
    assert np.allclose(view["image_to_word"], weights[:n, n + 1 + 5].reshape(4, 4).numpy(), atol=1e-6)
    assert np.allclose(view["word_to_image"], weights[n + 1 + 5, :n].reshape(4, 4).numpy(), atol=1e-6)
    assert view["text_share"] == pytest.approx(weights[:n, n:].sum(-1).mean().item(), abs=1e-6)


def test_picture_is_the_decoded_clean_estimate_of_the_guided_velocity(model, vae, path):
    x, t = path[3], time_grid(6)[3][None]
    with torch.no_grad():  # CFG written out: v_null + s (v_cond - v_null), then x1 = x_t + (1 - t) v
        v_cond = model(x, t, Tokenizer().encode([CAPTION]))
        v_null = model(x, t, model.null_condition())
        clean = x + (1 - t) * (v_null + 2.0 * (v_cond - v_null))
        expected = vae.decode(clean)[0].permute(1, 2, 0).add(1).div(2).numpy()
    view = mmdit_attention_view(model, vae, CAPTION, step=3, steps=6, seed=3, trajectory=path)
    assert np.allclose(view["image"], expected, atol=1e-5)


def test_view_reads_the_chosen_word_and_refuses_one_beyond_the_caption(model, vae, path):
    view = mmdit_attention_view(model, vae, CAPTION, word=1, step=3, layer=1, steps=6, seed=3, trajectory=path)
    assert view["words"][1] == "red" and view["image"].shape == (32, 32, 3)
    assert view["image_to_word"].shape == (4, 4) and view["word_to_image"].shape == (4, 4)
    assert 0 < view["image_to_word"].max() <= view["text_share"] < 1 and 0 < view["word_to_image"].sum() < 1
    other = mmdit_attention_view(model, vae, CAPTION, word=6, step=3, layer=1, steps=6, seed=3, trajectory=path)
    assert not np.allclose(view["image_to_word"], other["image_to_word"])
    assert view["t"] == pytest.approx(0.5) and "word 1 'red'" in view["text"] and "step 3 of 6" in view["text"]
    for name, value, message in (("word", 4, "word must be an integer from 0 to 3, got 4"),
                                 ("word", -1, "word must be an integer from 0 to 3, got -1"),
                                 ("step", 3, "step must be an integer from 0 to 2"),
                                 ("layer", 2, "layer must be an integer from 0 to 1")):
        with pytest.raises(ValueError, match=message):
            mmdit_attention_view(model, vae, "two small green diamonds", **{"word": 0, "step": 1, "layer": 0,
                                                                              name: value}, steps=2)


def test_view_reuses_a_trajectory_without_changing_the_view(model, vae, path):
    assert path.shape == (7, 1, 4, 8, 8)
    fresh = mmdit_attention_view(model, vae, CAPTION, word=2, step=4, layer=1, steps=6, seed=3)
    reused = mmdit_attention_view(model, vae, CAPTION, word=2, step=4, layer=1, steps=6, seed=3, trajectory=path)
    assert all(np.array_equal(fresh[k], reused[k]) for k in ("image", "image_to_word", "word_to_image"))


def test_explorer_redraws_and_reports_unknown_words(model):
    explorer = mmdit_attention_explorer(model, steps=6)  # the shipped VAE decodes
    first = explorer.image.value
    explorer.controls["word"].value = 2
    assert "word 2 'circle'" in explorer.view["text"] and explorer.image.value != first
    shown = explorer.image.value
    explorer.controls["caption"].value = "a red hexagon"
    assert "unknown word 'hexagon'" in explorer.view["text"] and explorer.image.value == shown  # last picture kept
    explorer.controls["caption"].value = "two small green diamonds"
    assert "word 2 'green'" in explorer.view["text"]
    assert explorer.controls["word"].max == 11 and explorer.controls["layer"].max == 1


def test_explorer_samples_each_caption_once(model, vae, monkeypatch):
    runs = []

    def counted(model, captions, *args, **kwargs):
        runs.append(captions[0])
        return sample_trajectory(model, captions, *args, **kwargs)

    monkeypatch.setattr(mmdit_attention, "sample_trajectory", counted)
    explorer = mmdit_attention_explorer(model, steps=4, vae=vae)
    for name, value in (("word", 3), ("step", 1), ("layer", 1), ("caption", "two small green diamonds"),
                        ("step", 2), ("caption", CAPTION), ("word", 2)):
        explorer.controls[name].value = value
    assert runs == [CAPTION, "two small green diamonds"]
