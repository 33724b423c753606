"""The receptive-field explorer: the field it reports is the receptive-field arithmetic's, the measured field sits
inside it, and moving a slider redraws the square and reprints the numbers."""

import numpy as np
import pytest

from course_utils.explorers import receptive_field_explorer, receptive_field_view
from course_utils.explorers.base import example_scene
from course_utils.explorers.receptive_field import background_image
from course_utils.receptive_field import receptive_field


def test_plain_stack_field_grows_by_kernel_minus_one_per_layer():
    view = receptive_field_view(depth=4, kernel=3)
    assert view["rf"] == 1 + 4 * 2 and view["jump"] == 1  # closed form 1 + L (k - 1)
    assert view["square"] == (16 - 4.5, 16 - 4.5, 9)
    assert view["erf"].shape == (32, 32)
    assert view["rf_plain"][:4] == [3, 5, 7, 9]  # linear growth
    assert view["rf_down"][-1] > 4 * view["rf_plain"][-1]  # pooling: far faster
    assert "receptive field: 9 pixels" in view["text"] and "9x9 of 32x32" in view["text"]


def test_effective_field_is_centred_and_inside_the_theoretical_field():
    view = receptive_field_view(depth=3, kernel=5)  # field 13: 6 pixels either side of the centre
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


def test_explorer_draws_the_field_over_the_example_scene():
    explorer = receptive_field_explorer()
    drawn = np.asarray(explorer.figure.axes[0].images[0].get_array())
    assert np.array_equal(drawn, example_scene(32)[0].permute(1, 2, 0).numpy())
    assert background_image(32) is background_image(32)  # rendered once, not on every redraw


def test_explorer_sliders_have_the_documented_ranges():
    controls = receptive_field_explorer().controls
    assert set(controls) == {"depth", "kernel", "dilation", "downsample_every"}
    assert (controls["depth"].min, controls["depth"].max) == (1, 16)
    assert controls["kernel"].step == 2 and all(not c.continuous_update for c in controls.values())
