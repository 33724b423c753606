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


@pytest.mark.browser
def test_rope_explorers_respond_in_the_browser(tmp_path):
    with jupyter_lab_page(NOTEBOOKS / "05_rope.ipynb", tmp_path) as page:
        slider(page, "position m")
        one, two = explorer_text(page, 0), explorer_text(page, 1)
        expect(one).to_contain_text("query at position m = 3", timeout=TIMEOUT_MS)
        expect(two).to_contain_text("query token (row 7, column 7)", timeout=TIMEOUT_MS)
        before = explorer_figure(page, 1).get_attribute("src")

        set_slider(page, "position m", 12)
        expect(one).to_contain_text("query at position m = 12", timeout=TIMEOUT_MS)
        set_slider(page, "query row", 2)
        expect(two).to_contain_text("query token (row 2, column 7)", timeout=TIMEOUT_MS)
        expect(explorer_figure(page, 1)).not_to_have_attribute("src", before, timeout=TIMEOUT_MS)
        page.get_by_role("button", name="mixed", exact=True).click()
        set_slider(page, "direction", 90)
        expect(two).to_contain_text("direction 90 degrees", timeout=TIMEOUT_MS)


@pytest.mark.browser
def test_mmdit_attention_explorer_responds_in_the_browser(tmp_path):
    with jupyter_lab_page(NOTEBOOKS / "06_mmdit.ipynb", tmp_path) as page:
        slider(page, "word")
        text = explorer_text(page)
        expect(text).to_contain_text("word 1 'red'", timeout=TIMEOUT_MS)
        image = explorer_figure(page)
        before = image.get_attribute("src")

        set_slider(page, "word", 2)
        expect(text).to_contain_text("word 2 'circle'", timeout=TIMEOUT_MS)
        expect(image).not_to_have_attribute("src", before, timeout=TIMEOUT_MS)
        set_slider(page, "step", 8)
        expect(text).to_contain_text("step 8 of 10", timeout=TIMEOUT_MS)
