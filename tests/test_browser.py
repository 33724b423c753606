"""Every explorer in a real browser: JupyterLab boots once and runs one generated notebook that holds every lesson
cell tagged "explorer"; Chromium moves a slider of each, and its printed numbers and its figure must update.
A screenshot lands in test-artifacts/explorers.png."""

from pathlib import Path

import pytest
from browser import (
    TIMEOUT_MS,
    explorer,
    explorer_figure,
    explorer_notebook,
    explorer_text,
    jupyter_lab_page,
    require_chromium,
    set_slider,
    slider,
)
from playwright.sync_api import expect

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("0*.ipynb"))
ORDER = ["receptive field", "patches", "adaln", "rope 1d", "rope 2d", "mmdit attention"]  # lessons 01, 03-06


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    require_chromium()
    home = tmp_path_factory.mktemp("browser")
    (home / "lab").mkdir()
    notebook = home / "lab" / "explorers.ipynb"
    assert explorer_notebook(NOTEBOOKS, notebook) == len(ORDER)
    with jupyter_lab_page(notebook, home) as page:
        yield page


def responds(scope, label, value, before_text, after_text):
    """Move slider `label` to `value`: the text must go from before_text to after_text and the figure change."""
    text, figure = explorer_text(scope), explorer_figure(scope)
    expect(text).to_contain_text(before_text, timeout=TIMEOUT_MS)
    before = figure.get_attribute("src")
    set_slider(scope, label, value)
    expect(text).to_contain_text(after_text, timeout=TIMEOUT_MS)
    expect(figure).not_to_have_attribute("src", before, timeout=TIMEOUT_MS)


@pytest.mark.browser
def test_receptive_field_explorer_responds_in_the_browser(page):
    scope = explorer(page, ORDER.index("receptive field"))
    responds(scope, "depth", 6, "receptive field: 9 pixels", "receptive field: 13 pixels")
    set_slider(scope, "downsample every", 2)
    expect(explorer_text(scope)).to_contain_text("downsample every 2 layers", timeout=TIMEOUT_MS)


@pytest.mark.browser
def test_patch_explorer_responds_in_the_browser(page):
    scope = explorer(page, ORDER.index("patches"))
    text, figure = explorer_text(scope), explorer_figure(scope)
    expect(text).to_contain_text("tokens: 4x4 = 16", timeout=TIMEOUT_MS)
    before = figure.get_attribute("src")
    handle = slider(scope, "patch size").locator(".noUi-handle")
    handle.focus()
    handle.press("ArrowRight")  # patch size 2 -> 4 (a selection slider has no editable readout)
    expect(text).to_contain_text("tokens: 2x2 = 4", timeout=TIMEOUT_MS)
    expect(figure).not_to_have_attribute("src", before, timeout=TIMEOUT_MS)


@pytest.mark.browser
def test_adaln_explorer_responds_in_the_browser(page):
    scope = explorer(page, ORDER.index("adaln"))
    responds(scope, "t", 0.9, "t = 0.50", "t = 0.90")
    set_slider(scope, "channel", 7)
    expect(explorer_text(scope)).to_contain_text("channel 7:", timeout=TIMEOUT_MS)


@pytest.mark.browser
def test_rope_1d_explorer_responds_in_the_browser(page):
    scope = explorer(page, ORDER.index("rope 1d"))
    responds(scope, "position m", 12, "query at position m = 3", "query at position m = 12")


@pytest.mark.browser
def test_rope_2d_explorer_responds_in_the_browser(page):
    scope = explorer(page, ORDER.index("rope 2d"))
    responds(scope, "query row", 2, "query token (row 7, column 7)", "query token (row 2, column 7)")
    scope.get_by_role("button", name="mixed", exact=True).click()
    set_slider(scope, "direction", 90)
    expect(explorer_text(scope)).to_contain_text("direction 90 degrees", timeout=TIMEOUT_MS)


@pytest.mark.browser
def test_mmdit_attention_explorer_responds_in_the_browser(page):
    scope = explorer(page, ORDER.index("mmdit attention"))
    responds(scope, "word", 2, "word 1 'red'", "word 2 'circle'")
    set_slider(scope, "step", 8)
    expect(explorer_text(scope)).to_contain_text("step 8 of 10", timeout=TIMEOUT_MS)
