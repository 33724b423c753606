"""The instructor gallery in a real browser: Voila serves notebooks/gallery.ipynb with the command line that
`python3 course.py gallery` runs (on a free port), and Chromium checks that the page shows every explorer, no code,
and that moving a slider of each redraws its figure. A screenshot lands in test-artifacts/gallery.png."""

import importlib.util
import sys
from pathlib import Path

import pytest
from browser import RUN_TIMEOUT_MS, TIMEOUT_MS, explorer, explorer_figure, explorer_text, slider, voila_page
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("course", ROOT / "course.py")
course = importlib.util.module_from_spec(spec)
spec.loader.exec_module(course)

# (heading, slider moved one step to the right, the explorer's text before the move), in the gallery's order
EXPLORERS = [
    ("Receptive fields", "depth", "depth 4,"),
    ("Patches as tokens", "patch size", "tokens: 4x4 = 16"),
    ("AdaLN", "t", "t = 0.50"),
    ("RoPE in 1D", "position m", "query at position m = 3"),
    ("RoPE in 2D", "query row", "query token (row 7, column 7)"),
    ("MMDiT joint attention", "word", "word 1 'red'"),
]
FIGURE_DIGEST = """async img => {
    const bytes = await (await fetch(img.src)).arrayBuffer();
    const digest = await crypto.subtle.digest("SHA-256", bytes);
    return Array.from(new Uint8Array(digest), b => b.toString(16).padStart(2, "0")).join("");
}"""


def gallery_command(port):
    """What `python3 course.py gallery --port=PORT` runs on a machine without a display, with this venv's python."""
    cmd, _ = course.gallery_command(sys.executable, has_display=False,
                                    extra=[f"--port={port}", "--Voila.port_retries=0"])
    return cmd


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    with voila_page(gallery_command, ROOT, tmp_path_factory.mktemp("gallery")) as page:
        # the widgets draw once the page's widget manager has connected to the kernel that ran the notebook
        expect(page.locator(".explorer")).to_have_count(len(EXPLORERS), timeout=RUN_TIMEOUT_MS)
        yield page


def figure_digest(scope):
    """SHA-256 of the PNG bytes the explorer's figure shows now."""
    return explorer_figure(scope).evaluate(FIGURE_DIGEST)


@pytest.mark.browser
def test_the_gallery_shows_every_explorer_under_its_heading_and_no_code(page):
    headings = page.locator("h2")
    for index, (heading, _, _) in enumerate(EXPLORERS):
        expect(headings.nth(index)).to_contain_text(heading)
        expect(explorer_figure(explorer(page, index))).to_be_visible()
    content = page.content()
    assert "load_model(" not in content and "receptive_field_explorer(" not in content, "the gallery shows code"


@pytest.mark.browser
@pytest.mark.parametrize("index", range(len(EXPLORERS)), ids=[heading for heading, _, _ in EXPLORERS])
def test_moving_a_slider_redraws_the_explorers_figure(page, index):
    _, label, text_before = EXPLORERS[index]
    scope = explorer(page, index)
    figure, text = explorer_figure(scope), explorer_text(scope)
    expect(text).to_contain_text(text_before, timeout=TIMEOUT_MS)
    src, digest = figure.get_attribute("src"), figure_digest(scope)
    handle = slider(scope, label).locator(".noUi-handle")
    handle.focus()
    handle.press("ArrowRight")  # one step up; works for every slider kind (a selection slider has no readout)
    expect(text).not_to_contain_text(text_before, timeout=TIMEOUT_MS)
    expect(figure).not_to_have_attribute("src", src, timeout=TIMEOUT_MS)
    assert figure_digest(scope) != digest, f"moving '{label}' changed the text but not the figure's pixels"
