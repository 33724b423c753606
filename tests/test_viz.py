import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from course_utils.config import SEEDS  # noqa: E402
from course_utils.data import render_shapes, to_float  # noqa: E402
from course_utils.train import History  # noqa: E402
from course_utils.viz import plot_curves, show_images, show_latent_channels  # noqa: E402


def test_show_images_draws_each_image_once_with_its_title():
    batch = render_shapes(5, seed=SEEDS["examples"])
    fig = show_images(batch.images, batch.captions, ncols=3)
    axes = fig.get_axes()
    drawn = [ax for ax in axes if ax.get_images()]
    assert len(axes) == 6 and len(drawn) == 5  # a 2 x 3 grid, the last cell empty
    shown = drawn[0].get_images()[0].get_array()
    assert shown.shape == (32, 32, 3) and abs(float(shown.max()) - batch.images[0].max().item() / 255) < 1e-6
    assert drawn[0].get_title().replace("\n", " ") == batch.captions[0]
    plt.close(fig)


def test_show_images_takes_float_images_in_minus_one_to_one():
    images = render_shapes(2, seed=SEEDS["examples"]).images
    a, b = show_images(images), show_images(to_float(images))
    for ax_a, ax_b in zip(a.get_axes(), b.get_axes()):
        assert (ax_a.get_images()[0].get_array() - ax_b.get_images()[0].get_array()).max() < 1e-6
    plt.close("all")


def test_latent_channels_share_one_colour_scale():
    latents = torch.randn(2, 4, 8, 8)
    fig = show_latent_channels(latents)
    limits = {ax.get_images()[0].get_clim() for ax in fig.get_axes()}
    assert len(fig.get_axes()) == 8 and limits == {(-latents.abs().max().item(), latents.abs().max().item())}
    plt.close(fig)


def test_plot_curves_draws_one_line_per_history():
    histories = {"a": History(val_loss=[(10, 1.0), (20, 0.5)]), "b": History(val_loss=[(10, 2.0), (20, 1.5)])}
    ax = plot_curves(histories)
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    assert list(lines[1].get_ydata()) == [2.0, 1.5] and ax.get_yscale() == "log"
    plt.close("all")


def test_comparison_plots_draw_bands_and_error_bars_that_match_the_intervals():
    from course_utils.results import summarize
    from course_utils.viz import plot_bands, plot_bars

    def result(offset):
        spread = (0.0, 0.01, 0.02)
        variants = {v: {"seeds": [0, 1, 2], "metrics": {
            "val_loss": [0.6 + offset + d for d in spread],
            "curve": [[[10, 0.9 + d], [20, 0.6 + offset + d]] for d in spread]}} for v in ("a", "b")}
        return {"budget": {"n_eval": 10}, "variants": variants}

    ax = plot_bands(result(0.0))
    assert len(ax.lines) == 2 and len(ax.collections) == 2  # a mean line and a band per variant
    assert torch.allclose(torch.tensor(ax.lines[0].get_ydata()), torch.tensor([0.91, 0.61], dtype=torch.float64))
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    final = summarize(result(0.0), "val_loss")["a"]  # the last point of the curve is the final loss
    assert abs(band.min() - final.low) < 1e-9 and abs(band.max() - (0.91 + final.half_width)) < 1e-9
    plt.close("all")
    ax = plot_bars({"yours": result(0.0), "reference": result(0.05)})
    assert sorted(round(p.get_height(), 6) for p in ax.patches) == [0.61, 0.61, 0.66, 0.66]
    reference_bars = next(c for c in ax.containers if c.get_label().startswith("reference"))
    (low, high) = reference_bars.errorbar.lines[2][0].get_segments()[0][:, 1]  # its first bar's error bar
    reference = summarize(result(0.05), "val_loss")["a"]
    assert abs(low - reference.low) < 1e-9 and abs(high - reference.high) < 1e-9
    plt.close("all")


def test_consistency_by_distance_is_drawn_with_its_wilson_intervals():
    from course_utils.results import by_distance
    from course_utils.viz import plot_by_distance

    counts = {"consistent_1": [3, 4], "found_1": [5, 5], "consistent_2": [1, 0], "found_2": [4, 6]}
    result = {"budget": {"n_eval": 10}, "variants": {v: {"seeds": [0, 1], "metrics": counts} for v in ("a", "b")}}
    ax = plot_by_distance({"reference": result})
    assert [c.get_label() for c in ax.containers] == ["reference: a", "reference: b"]
    line = ax.containers[0].lines[0]
    assert list(line.get_xdata()) == [1.0, 2.0] and list(line.get_ydata()) == [0.7, 0.1]
    (low, high) = ax.containers[0].lines[2][0].get_segments()[1][:, 1]  # distance 2's error bar
    expected = by_distance(result)["a"]["2"]
    assert abs(low - expected.low) < 1e-9 and abs(high - expected.high) < 1e-9
    plt.close("all")
