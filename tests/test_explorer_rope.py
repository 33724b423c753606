"""The RoPE explorers: each pair turns by position x frequency, so 1D scores depend only on the offset; axial 2D
score maps are row + column, mixed ones at an oblique direction are not; sliders redraw both explorers."""

import numpy as np
import pytest

from course_utils.explorers import rope_1d_explorer, rope_1d_view, rope_2d_explorer, rope_2d_view
from course_utils.explorers.rope import separability


def test_1d_view_rotates_each_pair_by_position_times_frequency():
    view = rope_1d_view(position=5, pair=2, theta=100.0, dim=8)
    freqs = 100.0 ** (-np.arange(4) / 4)  # theta^(-2i/d)
    assert np.allclose(view["vectors"], np.stack([np.cos(5 * freqs), np.sin(5 * freqs)], 1), atol=1e-6)
    assert np.allclose(view["scores"], view["scores_at_0"], atol=1e-4) and view["gap"] < 1e-4
    assert view["wavelength"] == pytest.approx(2 * np.pi / freqs[2], rel=1e-5)
    assert np.allclose(view["pair_term"], np.cos(view["offsets"] * freqs[2]), atol=1e-6)
    assert "one full turn every 62.8 positions" in view["text"]


def test_separability_is_zero_exactly_for_row_plus_column_maps():
    rows, cols = np.meshgrid(np.arange(5.0), np.arange(5.0), indexing="ij")
    assert separability(np.cos(rows) + np.sin(2 * cols)) < 1e-12
    assert separability(np.cos(rows + cols)) > 0.1  # a diagonal wave


def test_2d_view_axial_is_axis_aligned_and_mixed_is_oblique():
    view = rope_2d_view(row=3, col=4, direction=45.0, grid=9)
    axial, mixed = view["axial"], view["mixed"]
    assert axial[3, 4] == pytest.approx(1.0) and mixed[3, 4] == pytest.approx(1.0)
    assert view["separability_axial"] < 1e-5 < 0.1 < view["separability_mixed"]
    # from a central query the axial map is symmetric under swapping rows and columns; mixed at 30 degrees is not
    central = rope_2d_view(row=4, col=4, grid=9)["axial"]
    assert np.allclose(central, central.T)
    tilted = rope_2d_view(row=4, col=4, direction=30.0, grid=9)["mixed"]
    assert not np.allclose(tilted, tilted.T, atol=1e-3)
    aligned = rope_2d_view(row=3, col=4, direction=0.0, grid=9)
    assert np.allclose(aligned["mixed"], aligned["axial"], atol=1e-5)


def test_2d_view_rejects_a_query_off_the_grid():
    with pytest.raises(ValueError, match="must lie on the 9x9 grid"):
        rope_2d_view(row=9, col=0, grid=9)


def test_1d_explorer_redraws_when_the_position_and_pair_move():
    explorer = rope_1d_explorer()
    first = explorer.image.value
    assert "query at position m = 3" in explorer.text.value
    explorer.controls["position"].value = 10
    assert "position m = 10" in explorer.text.value and explorer.image.value != first
    explorer.controls["pair"].value = 3
    assert "pair 3:" in explorer.text.value and explorer.figure.axes[2].get_title().startswith("(c) pair 3")
    explorer.controls["theta"].value = 10.0
    assert "theta 10," in explorer.text.value


def test_2d_explorer_redraws_when_the_query_kind_and_direction_move():
    explorer = rope_2d_explorer(grid=9)
    first = explorer.image.value
    explorer.controls["row"].value = 1
    assert "(row 1, column 7)" in explorer.text.value and explorer.image.value != first
    explorer.controls["kind"].value = "axial"
    assert len(explorer.figure.axes) == 2 and explorer.figure.axes[0].get_title().startswith("axial")
    explorer.controls["direction"].value = 90.0
    assert "direction 90 degrees" in explorer.text.value


def test_1d_view_refuses_a_pair_or_position_out_of_range():
    with pytest.raises(ValueError, match="pair must be an integer from 0 to 7, got 8"):
        rope_1d_view(pair=8, dim=16)
    with pytest.raises(ValueError, match="position must be a non-negative integer"):
        rope_1d_view(position=-2)
