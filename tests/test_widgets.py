"""Explorers tested headless: set slider values, check what was computed, drawn and printed."""

import numpy as np
import pytest
import torch

from course_utils.data import Tokenizer
from course_utils.flow import euler_sample
from course_utils.receptive_field import receptive_field
from course_utils.widgets import (
    adaln_explorer,
    adaln_view,
    guided_trajectory,
    mmdit_attention_explorer,
    mmdit_attention_view,
    patch_explorer,
    patch_view,
    receptive_field_explorer,
    receptive_field_view,
    rope_1d_explorer,
    rope_1d_view,
    rope_2d_explorer,
    rope_2d_view,
)


def test_receptive_field_view_numbers():
    view = receptive_field_view(depth=4, kernel=3)
    assert view["rf"] == 9 and view["jump"] == 1
    assert view["square"] == (16 - 4.5, 16 - 4.5, 9)
    assert view["erf"].shape == (32, 32)
    assert view["rf_plain"][:4] == [3, 5, 7, 9]  # linear growth
    assert view["rf_down"][-1] > 4 * view["rf_plain"][-1]  # pooling: far faster
    assert "receptive field: 9 pixels" in view["text"] and "9x9 of 32x32" in view["text"]


def test_erf_is_centred_and_within_the_field():
    view = receptive_field_view(depth=3, kernel=5)
    erf = view["erf"]
    ys, xs = np.nonzero(erf > 1e-12)
    assert ys.min() >= 16 - 6 and ys.max() <= 16 + 6 and xs.min() >= 16 - 6 and xs.max() <= 16 + 6
    assert np.unravel_index(erf.argmax(), erf.shape) in {(16, 16), (15, 16), (16, 15), (15, 15), (17, 16), (16, 17)}


@pytest.mark.parametrize("every", [1, 2, 3])
def test_downsampling_grows_the_field_faster(every):
    plain = receptive_field_view(depth=8)["rf"]
    pooled = receptive_field_view(depth=8, downsample_every=every)
    assert pooled["rf"] > plain and pooled["rf"] == receptive_field(pooled["layers"])


def test_explorer_redraws_and_reprints_when_a_slider_moves():
    explorer = receptive_field_explorer(depth=2)
    first_image, first_text = explorer.image.value, explorer.text.value
    assert first_image[:8] == b"\x89PNG\r\n\x1a\n" and "receptive field: 5 pixels" in first_text
    explorer.controls["depth"].value = 6
    assert "receptive field: 13 pixels" in explorer.text.value and explorer.image.value != first_image
    axes = explorer.figure.axes
    assert [ax.get_title()[:3] for ax in axes] == ["(a)", "(b)", "(c)"]
    assert axes[0].patches[0].get_width() == 13  # the square drawn over the image is the field
    explorer.controls["downsample_every"].value = 2
    assert explorer.view["rf"] == receptive_field(explorer.view["layers"]) > 13
    assert "downsample every 2 layers" in explorer.text.value


def test_explorer_sliders_have_the_documented_ranges():
    controls = receptive_field_explorer().controls
    assert set(controls) == {"depth", "kernel", "dilation", "downsample_every"}
    assert (controls["depth"].min, controls["depth"].max) == (1, 16)
    assert controls["kernel"].step == 2 and all(not c.continuous_update for c in controls.values())


def test_patch_view_numbers():
    from course_utils.attention import block_macs

    view = patch_view(patch_size=2)
    assert view["n_tokens"] == 16 and view["tokens"].shape == (16, 16) and view["grid"] == 4
    assert view["attention_entries"] == 256
    assert view["gflops"] == pytest.approx(12 * block_macs(16, 384) / 1e9)
    assert "tokens: 4x4 = 16" in view["text"] and "256 entries" in view["text"]
    big = patch_view(patch_size=2, image_size=64)
    assert big["n_tokens"] == 64 and big["gflops"] > 4 * view["gflops"]


def test_patch_view_tokens_are_the_patchified_latent():
    from course_utils.patchify import unpatchify

    view = patch_view(patch_size=4)
    latent = unpatchify(torch.from_numpy(view["tokens"])[None], 4, 2, 2, 4)[0]
    assert torch.equal(latent, torch.from_numpy(view["latent"]))


def test_patch_explorer_redraws_when_the_patch_size_moves():
    explorer = patch_explorer(patch_size=2)
    first = explorer.image.value
    explorer.controls["patch_size"].value = 1
    assert "tokens: 8x8 = 64" in explorer.text.value and explorer.image.value != first
    assert explorer.figure.axes[2].get_title() == "(c) 64 tokens x 4 features"
    assert len(explorer.figure.axes[0].lines) == 2 * 7  # 7 horizontal and 7 vertical grid lines
    assert list(explorer.controls["patch_size"].options) == [1, 2, 4, 8]


def _trained_like_dit():
    from course_utils.dit import dit_tiny

    torch.manual_seed(0)
    model = dit_tiny("adaln_zero", depth=2)
    with torch.no_grad():  # give the zero-initialised modulation some weights, as training would
        for block in model.blocks:
            block.modulation.weight.normal_(0, 0.05)
    return model.eval()


def test_adaln_view_modulates_exactly_as_the_formula():
    view = adaln_view(_trained_like_dit(), t=0.3, channel=5, scale=0.5, shift=-0.2, gate=0.25)
    expected = view["normalised"] * (1 + view["scale"]) + view["shift"]
    assert np.allclose(view["modulated"], expected, atol=1e-5)
    assert np.allclose(view["gated"], view["gate"] * view["branch"], atol=1e-6)
    assert np.allclose(view["normalised"].mean(1), 0, atol=1e-5)  # LayerNorm output per token
    base = adaln_view(_trained_like_dit(), t=0.3, channel=5)
    assert view["scale"][5] == pytest.approx(base["scale"][5] + 0.5, abs=1e-6)
    assert view["gate"][5] == pytest.approx(base["gate"][5] + 0.25, abs=1e-6)
    assert np.array_equal(np.delete(view["scale"], 5), np.delete(base["scale"], 5))
    assert "channel 5:" in view["text"]


def test_adaln_view_depends_on_time_and_caption():
    model = _trained_like_dit()
    a = adaln_view(model, t=0.1)
    b = adaln_view(model, t=0.9)
    c = adaln_view(model, t=0.1, caption="two large white diamonds")
    assert not np.allclose(a["scale"], b["scale"]) and not np.allclose(a["scale"], c["scale"])


def test_adaln_zero_at_init_keeps_nothing_of_the_branch():
    from course_utils.dit import dit_tiny

    view = adaln_view(dit_tiny("adaln_zero").eval())
    assert view["kept"] == 0.0 and "keeps 0.0%" in view["text"]


def test_adaln_explorer_redraws_when_sliders_move():
    explorer = adaln_explorer(_trained_like_dit())
    first_image, first_text = explorer.image.value, explorer.text.value
    explorer.controls["t"].value = 0.9
    assert "t = 0.90" in explorer.text.value and explorer.image.value != first_image
    explorer.controls["channel"].value = 7
    explorer.controls["gate"].value = -1.0
    assert "channel 7:" in explorer.text.value and explorer.text.value != first_text
    assert [ax.get_title()[:3] for ax in explorer.figure.axes] == ["(a)", "(b)", "(c)"]
    assert explorer.controls["channel"].max == 127 and explorer.controls["block"].max == 1


def test_rope_1d_view_rotates_each_pair_by_position_times_frequency():
    view = rope_1d_view(position=5, pair=2, theta=100.0, dim=8)
    freqs = 100.0 ** (-np.arange(4) / 4)
    assert np.allclose(view["vectors"], np.stack([np.cos(5 * freqs), np.sin(5 * freqs)], 1), atol=1e-6)
    assert np.allclose(view["scores"], view["scores_at_0"], atol=1e-4) and view["gap"] < 1e-4
    assert view["wavelength"] == pytest.approx(2 * np.pi / freqs[2], rel=1e-5)
    assert np.allclose(view["pair_term"], np.cos(view["offsets"] * freqs[2]), atol=1e-6)
    assert "one full turn every 62.8 positions" in view["text"]


def test_rope_2d_view_axial_is_axis_aligned_and_mixed_is_oblique():
    view = rope_2d_view(row=3, col=4, direction=45.0, grid=9)
    axial, mixed = view["axial"], view["mixed"]
    assert axial[3, 4] == pytest.approx(1.0) and mixed[3, 4] == pytest.approx(1.0)
    assert view["separability_axial"] < 1e-5 < 0.1 < view["separability_mixed"]
    # from a central query the axial map is symmetric under swapping rows and columns; mixed at 30 degrees is not
    assert np.allclose(rope_2d_view(row=4, col=4, grid=9)["axial"], rope_2d_view(row=4, col=4, grid=9)["axial"].T)
    tilted = rope_2d_view(row=4, col=4, direction=30.0, grid=9)["mixed"]
    assert not np.allclose(tilted, tilted.T, atol=1e-3)
    aligned = rope_2d_view(row=3, col=4, direction=0.0, grid=9)
    assert np.allclose(aligned["mixed"], aligned["axial"], atol=1e-5)


def test_rope_explorers_redraw_when_sliders_move():
    one = rope_1d_explorer()
    first = one.image.value
    one.controls["position"].value = 10
    assert "position m = 10" in one.text.value and one.image.value != first
    one.controls["pair"].value = 3
    assert "pair 3:" in one.text.value and one.figure.axes[2].get_title().startswith("(c) pair 3")
    two = rope_2d_explorer(grid=9)
    first = two.image.value
    two.controls["row"].value = 1
    assert "(row 1, column 7)" in two.text.value and two.image.value != first
    two.controls["kind"].value = "axial"
    assert len(two.figure.axes) == 2 and two.figure.axes[0].get_title().startswith("axial")
    two.controls["direction"].value = 90.0
    assert "direction 90 degrees" in two.text.value


def _trained_like_mmdit():
    from course_utils.mmdit import MMDiT

    torch.manual_seed(0)
    model = MMDiT(dim=32, depth=2, heads=4, text_depth=1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "modulation" in name or "final" in name:
                p.normal_(0, 0.05)
    return model.eval()


def test_mmdit_attention_view_reads_the_joint_attention_of_the_chosen_word():
    model = _trained_like_mmdit()
    view = mmdit_attention_view(model, "a red circle above a blue square", word=1, step=3, layer=1, steps=6)
    assert view["words"][1] == "red" and view["image"].shape == (32, 32, 3)
    assert view["image_to_word"].shape == (4, 4) and view["word_to_image"].shape == (4, 4)
    assert 0 < view["image_to_word"].max() <= view["text_share"] < 1 and 0 < view["word_to_image"].sum() < 1
    other = mmdit_attention_view(model, "a red circle above a blue square", word=6, step=3, layer=1, steps=6)
    assert not np.allclose(view["image_to_word"], other["image_to_word"])
    assert view["t"] == pytest.approx(0.5) and "word 1 'red'" in view["text"]
    assert mmdit_attention_view(model, "two small green diamonds", word=11, steps=6)["word"] == 3  # clamped


def test_mmdit_attention_view_reuses_a_trajectory_without_changing_the_view():
    model = _trained_like_mmdit()
    caption = "a red circle above a blue square"
    path = guided_trajectory(model, caption, steps=6, cfg_scale=2.0, seed=3)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    final = euler_sample(model, noise, Tokenizer().encode([caption]), 6, model.null_condition(), 2.0)
    assert path.shape == (7, 1, 4, 8, 8) and torch.allclose(path[-1], final)
    fresh = mmdit_attention_view(model, caption, word=2, step=4, layer=1, steps=6, seed=3)
    reused = mmdit_attention_view(model, caption, word=2, step=4, layer=1, steps=6, seed=3, trajectory=path)
    assert all(np.array_equal(fresh[k], reused[k]) for k in ("image", "image_to_word", "word_to_image"))


def test_mmdit_attention_explorer_redraws_and_reports_unknown_words():
    explorer = mmdit_attention_explorer(_trained_like_mmdit(), steps=6)
    first = explorer.image.value
    explorer.controls["word"].value = 2
    assert "'circle'" in explorer.view["text"] and explorer.image.value != first
    explorer.controls["caption"].value = "a red hexagon"
    assert "unknown word 'hexagon'" in explorer.view["text"]
    explorer.controls["caption"].value = "two small green diamonds"
    assert "word 2 'green'" in explorer.view["text"]
