"""Explorers in a real browser: JupyterLab runs the lesson notebook, Chromium moves a slider, and the
printed numbers and the figure must update. Screenshots land in test-artifacts/."""

from pathlib import Path

import pytest
from browser import TIMEOUT_MS, explorer_figure, explorer_text, jupyter_lab_page, set_slider, slider
from playwright.sync_api import expect

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.browser
def test_receptive_field_explorer_responds_in_the_browser(tmp_path):
    with jupyter_lab_page(NOTEBOOKS / "01_receptive_fields.ipynb", tmp_path) as page:
        slider(page, "depth")
        text = explorer_text(page)
        expect(text).to_contain_text("receptive field: 9 pixels", timeout=TIMEOUT_MS)
        image = explorer_figure(page)
        before = image.get_attribute("src")

        set_slider(page, "depth", 6)
        expect(text).to_contain_text("receptive field: 13 pixels", timeout=TIMEOUT_MS)
        expect(image).not_to_have_attribute("src", before, timeout=TIMEOUT_MS)

        set_slider(page, "downsample every", 2)
        expect(text).to_contain_text("downsample every 2 layers", timeout=TIMEOUT_MS)


@pytest.mark.browser
def test_patch_explorer_responds_in_the_browser(tmp_path):
    with jupyter_lab_page(NOTEBOOKS / "03_patchify_vit.ipynb", tmp_path) as page:
        handle = slider(page, "patch size").locator(".noUi-handle")
        text = explorer_text(page)
        expect(text).to_contain_text("tokens: 4x4 = 16", timeout=TIMEOUT_MS)
        image = explorer_figure(page)
        before = image.get_attribute("src")

        handle.focus()
        handle.press("ArrowRight")  # patch size 2 -> 4
        expect(text).to_contain_text("tokens: 2x2 = 4", timeout=TIMEOUT_MS)
        expect(image).not_to_have_attribute("src", before, timeout=TIMEOUT_MS)


@pytest.mark.browser
def test_adaln_explorer_responds_in_the_browser(tmp_path):
    with jupyter_lab_page(NOTEBOOKS / "04_dit_adaln.ipynb", tmp_path) as page:
        slider(page, "t")
        text = explorer_text(page)
        expect(text).to_contain_text("t = 0.50", timeout=TIMEOUT_MS)
        image = explorer_figure(page)
        before = image.get_attribute("src")

        set_slider(page, "t", 0.9)
        expect(text).to_contain_text("t = 0.90", timeout=TIMEOUT_MS)
        expect(image).not_to_have_attribute("src", before, timeout=TIMEOUT_MS)
        set_slider(page, "channel", 7)
        expect(text).to_contain_text("channel 7:", timeout=TIMEOUT_MS)
