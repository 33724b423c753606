"""The explorer contract: sliders drive a pure view and one redrawn figure; views read no files, install no hooks
and touch no private attribute; example scenes come from a seed that no training data uses."""

import ast
import builtins
import io
from pathlib import Path

import numpy as np
import pytest
import torch

import course_utils.explorers as explorers
from course_utils.config import SEEDS, training_seeds
from course_utils.data import render_shapes, to_float
from course_utils.explorers.base import Explorer, choice_slider, example_latent, example_scene, float_slider, int_slider
from course_utils.vae import VAE, load_vae, psnr

PNG = b"\x89PNG\r\n\x1a\n"


def count_view(n: int) -> dict:
    return {"n": n, "text": f"n = {n} <b>"}


def draw_count(view: dict, fig):
    ax = fig.subplots()
    ax.bar(range(view["n"]), np.arange(1, view["n"] + 1))
    ax.set_title(f"{view['n']} bars")


def test_explorer_draws_a_png_and_prints_the_escaped_text_at_start():
    explorer = Explorer(count_view, draw_count, {"n": int_slider("n", 3, 1, 9)})
    assert explorer.view == {"n": 3, "text": "n = 3 <b>"}
    assert explorer.image.value[:8] == PNG
    assert explorer.text.value == "<pre>n = 3 &lt;b&gt;</pre>"
    assert "explorer-figure" in explorer.image._dom_classes and "explorer-text" in explorer.text._dom_classes


def test_moving_a_control_recomputes_the_view_and_redraws_one_figure():
    explorer = Explorer(count_view, draw_count, {"n": int_slider("n", 3, 1, 9)})
    first = explorer.image.value
    explorer.controls["n"].value = 7
    assert explorer.view["n"] == 7 and "n = 7" in explorer.text.value and explorer.image.value != first
    assert len(explorer.figure.axes) == 1 and explorer.figure.axes[0].get_title() == "7 bars"  # cleared, not stacked
    assert len(explorer.figure.axes[0].patches) == 7


def test_controls_are_laid_out_in_the_given_rows():
    controls = {"a": int_slider("a", 1, 0, 2), "b": int_slider("b", 1, 0, 2), "c": int_slider("c", 1, 0, 2)}
    explorer = Explorer(lambda a, b, c: {"text": f"{a + b + c}"}, lambda view, fig: fig.subplots(), controls,
                        rows=[["a", "b"], ["c"]])
    first_row, second_row, image, text = explorer.widget.children
    assert [w.description for w in first_row.children] == ["a", "b"] and second_row.children[0].description == "c"
    assert (image, text) == (explorer.image, explorer.text)


def test_sliders_redraw_only_when_released():
    sliders = [int_slider("depth", 4, 1, 16, step=1), float_slider("t", 0.5, 0.0, 1.0, 0.05),
               choice_slider("patch size", [1, 2, 4], 2)]
    assert all(not s.continuous_update for s in sliders)
    assert (sliders[0].min, sliders[0].max, sliders[0].value) == (1, 16, 4)
    assert list(sliders[2].options) == [1, 2, 4] and sliders[2].value == 2


def test_example_scene_uses_a_seed_that_no_training_data_uses():
    assert all(SEEDS["examples"] not in seeds for seeds in training_seeds().values())
    scene = example_scene(32)
    assert scene.shape == (1, 3, 32, 32) and scene.dtype == torch.uint8
    assert torch.equal(scene, render_shapes(1, seed=SEEDS["examples"], size=32, mode="relation").images)


def test_example_latent_decodes_back_to_the_example_image():
    image, latent = example_latent(load_vae(), 64)
    assert image.shape == (64, 64, 3) and latent.shape == (1, 4, 16, 16)
    images = to_float(torch.from_numpy(image).permute(2, 0, 1)[None].contiguous())
    assert psnr(images, load_vae().decode(latent)) > 25


def every_view():
    """(name, thunk) for each view with small random inputs: no shipped file is needed."""
    from course_utils.dit import dit_tiny
    from course_utils.mmdit import mmdit_small

    torch.manual_seed(0)
    latent = torch.randn(1, 4, 8, 8)
    image = np.zeros((32, 32, 3), np.uint8)
    return [
        ("receptive_field_view", lambda: explorers.receptive_field_view(depth=3)),
        ("patch_view", lambda: explorers.patch_view(2, image, latent)),
        ("adaln_view", lambda: explorers.adaln_view(dit_tiny("adaln_zero", depth=2).eval(), latent)),
        ("rope_1d_view", lambda: explorers.rope_1d_view()),
        ("rope_2d_view", lambda: explorers.rope_2d_view(row=2, col=3, grid=5)),
        ("mmdit_attention_view", lambda: explorers.mmdit_attention_view(mmdit_small(depth=2).eval(), VAE(), steps=2,
                                                                         step=1)),
    ]


@pytest.mark.parametrize("name, view", every_view(), ids=[name for name, _ in every_view()])
def test_views_read_no_files_and_install_no_hooks(name, view, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError(f"{name} read a file or installed a hook")

    for owner, attribute in ((builtins, "open"), (io, "open"), (torch, "load"), (np, "load"),
                             (torch.nn.Module, "register_forward_hook"), (torch.nn.Module, "register_forward_pre_hook"),
                             (torch.nn.modules.module, "register_module_forward_hook")):
        monkeypatch.setattr(owner, attribute, forbidden)
    assert isinstance(view()["text"], str)


def test_explorer_modules_touch_no_private_attribute():
    allowed = {"_repr_mimebundle_"}  # the IPython display protocol, on the panel widget
    for path in Path(explorers.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                assert node.attr in allowed, f"{path.name}:{node.lineno} reads private attribute {node.attr}"
