"""The explorer pattern: sliders -> view = compute(**values), a pure function -> draw(view, figure) -> PNG.

The figure goes to an ipywidgets Image and view["text"] to an HTML widget, so an explorer behaves the same in
JupyterLab, in a headless test and in a real browser. Example scenes are drawn with SEEDS["examples"].
"""

import html
import io

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from ..config import SEEDS
from ..data import render_shapes, to_float


class Explorer:
    """Sliders -> view = compute(**values) -> draw(view, figure) -> PNG image, and view["text"] -> HTML.

    controls: {name: ipywidgets control}, laid out in one row or in `rows` (lists of names);
    `view`, `text` and `image` hold what is shown now; `widget` is the whole panel.
    """

    def __init__(self, compute, draw, controls: dict, figsize=(12, 3.8), dpi: int = 80, rows=None):
        self.compute, self.draw, self.controls, self.dpi = compute, draw, controls, dpi
        self.figure = Figure(figsize=figsize)
        self.image = widgets.Image(format="png").add_class("explorer-figure")
        self.text = widgets.HTML().add_class("explorer-text")
        for control in controls.values():
            control.observe(self.update, names="value")
        rows = rows or [list(controls)]
        panel = [widgets.HBox([controls[name] for name in row]) for row in rows]
        self.widget = widgets.VBox([*panel, self.image, self.text]).add_class("explorer")
        self.update()

    def update(self, change=None):
        """Recompute the view from the controls' values, redraw the figure and reprint the text."""
        self.view = self.compute(**{name: c.value for name, c in self.controls.items()})
        self.figure.clear()
        self.draw(self.view, self.figure)
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png", dpi=self.dpi, bbox_inches="tight")
        self.image.value = buffer.getvalue()
        self.text.value = f"<pre>{html.escape(self.view['text'])}</pre>"

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def check_index(name: str, value, count: int) -> None:
    """A slider value that picks one of `count` things (a row, a word, a layer...): an integer in 0..count - 1."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value < count:
        raise ValueError(f"{name} must be an integer from 0 to {count - 1}, got {value!r}.")


def int_slider(description: str, value: int, low: int, high: int, step: int = 1) -> widgets.IntSlider:
    """An integer slider from low to high that redraws when released (continuous_update=False)."""
    return widgets.IntSlider(value=value, min=low, max=high, step=step, description=description,
                             continuous_update=False, style={"description_width": "initial"})


def float_slider(description: str, value: float, low: float, high: float, step: float) -> widgets.FloatSlider:
    """A float slider from low to high that redraws when released."""
    return widgets.FloatSlider(value=value, min=low, max=high, step=step, description=description,
                               continuous_update=False)


def choice_slider(description: str, options, value) -> widgets.SelectionSlider:
    """A slider over a few fixed values (patch sizes, theta) that redraws when released."""
    return widgets.SelectionSlider(options=list(options), value=value, description=description,
                                   continuous_update=False)


def example_scene(size: int = 32) -> torch.Tensor:
    """The explorers' fixed two-object Shapes image (1, 3, size, size) uint8, drawn with SEEDS["examples"], a seed
    no training data uses. Procedural: nothing is read from disk."""
    return render_shapes(1, seed=SEEDS["examples"], size=size, mode="relation").images


def example_latent(vae, size: int = 32) -> tuple:
    """The example scene as an image (size, size, 3) uint8 and its VAE latent (1, C, size/4, size/4)."""
    scene = example_scene(size)  # (1, 3, size, size)
    device = next(vae.parameters()).device
    return np.ascontiguousarray(scene[0].permute(1, 2, 0).numpy()), vae.encode(to_float(scene).to(device)).cpu()
