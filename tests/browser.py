"""Real-browser harness for the explorers: a throwaway JupyterLab or Voila server driven by headless Chromium.

`explorer_notebook` gathers every lesson cell tagged "explorer" into one notebook; `jupyter_lab_page` runs a
notebook in JupyterLab and hands the playwright page to the test; `voila_page` does the same for a Voila command
(the instructor gallery). Env CHROMIUM names the browser binary (default:
`chromium` on PATH). Without it the browser tests skip and conftest.py says so at the end of the run; on CI
(env CI=true) a missing Chromium fails the run instead.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

CHROMIUM = Path(os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium")  # env CHROMIUM wins
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000
RUN_TIMEOUT_MS = 300_000  # every explorer cell; they load shipped weights, never the latent cache
EXPLORER_TAG = "explorer"


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_server(server: subprocess.Popen, url: str, log: Path, timeout: float = 60) -> None:
    """Return once `url` answers HTTP; fail with the server log if it exits or stays silent for `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            break
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the server did not answer on {url} (exit code {server.poll()}); log:\n{log.read_text()}")


def _stop(server: subprocess.Popen) -> None:
    """Stop the server (it shuts its kernels down on SIGTERM), then kill whatever of its process tree is left."""
    if server.poll() is not None:
        return
    tree = psutil.Process(server.pid).children(recursive=True)  # kernels run in sessions of their own
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()
    for proc in psutil.wait_procs(tree, timeout=5)[1]:
        proc.kill()


def _jupyter_env(home: Path) -> dict:
    """This environment with Jupyter's config, data and runtime dirs and IPython's in `home`: no user settings."""
    dirs = {"JUPYTER_CONFIG_DIR": "config", "JUPYTER_DATA_DIR": "data", "JUPYTER_RUNTIME_DIR": "runtime",
            "IPYTHONDIR": "ipython"}
    return {**os.environ, **{var: str(home / name) for var, name in dirs.items()}}


def _start_lab(home: Path) -> tuple[subprocess.Popen, int]:
    """Start JupyterLab on a free port, serving `home`/lab, with its config, data and runtime dirs in `home`."""
    port, root, log = _free_port(), home / "lab", home / "jupyter.log"
    env = _jupyter_env(home)
    news = home / "config/lab/user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no "get notified about Jupyter news?" toast over the page
    # sys.executable runs the server; the venv's python3 kernelspec starts "python", which jupyter_client
    # replaces by sys.executable, so the kernel runs in this venv too.
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
           "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}",
           "--IdentityProvider.token=", "--PasswordIdentityProvider.hashed_password=",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with log.open("w") as out:
        server = subprocess.Popen(cmd, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_server(server, f"http://127.0.0.1:{port}/api", log)
    except BaseException:
        _stop(server)
        raise
    return server, port


def run_all_cells(page: Page) -> None:
    """Run every cell through the menu Run > Run All Cells, once the kernel is connected and idle, and wait
    until every cell has run."""
    # The status bar reads "No Kernel | Initializing", then e.g. "Python 3 (ipykernel) | Idle"; the toolbar's
    # execution indicator already says idle before any kernel exists, and Run All then asks to select a kernel.
    kernel_idle = re.compile(r"^(?!No Kernel).+ \| Idle$")
    page.locator(".jp-StatusBar-TextItem", has_text=kernel_idle).wait_for(timeout=TIMEOUT_MS)
    page.locator("#jp-MainMenu").get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    # Widgets talk to the kernel, so a slider only answers once the kernel has run every queued cell ([*]).
    expect(page.locator(".jp-InputPrompt", has_text="[*]")).to_have_count(0, timeout=RUN_TIMEOUT_MS)


def explorer_cells(notebook: Path) -> list:
    """The code cells of a lesson tagged "explorer" (each builds and shows one explorer, imports included)."""
    cells = json.loads(notebook.read_text())["cells"]
    return [cell for cell in cells if EXPLORER_TAG in cell.get("metadata", {}).get("tags", [])]


def explorer_notebook(notebooks: list, target: Path) -> int:
    """Write one notebook holding every tagged explorer cell of `notebooks`, in lesson order; returns how many."""
    cells = [{**cell, "outputs": [], "execution_count": None} for nb in notebooks for cell in explorer_cells(nb)]
    template = json.loads(notebooks[0].read_text())
    target.write_text(json.dumps({**template, "cells": cells}, indent=1))
    return len(cells)


def require_chromium() -> None:
    """Skip without Chromium, except on CI (CI=true), where the browser layer must run: fail with the remedy."""
    if CHROMIUM.exists():
        return
    message = (f"chromium not found at {CHROMIUM}, so the widgets go untested: apt-get install chromium, "
               "or set CHROMIUM=/path/to/chromium (.ci/run installs it)")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def jupyter_lab_page(notebook: Path, home: Path) -> Iterator[Page]:
    """Open `notebook` (which must sit in home/lab) in JupyterLab in headless Chromium, run all cells and yield
    the page.

    On exit a screenshot goes to test-artifacts/<notebook stem>.png, then the browser, the server and its kernels
    are stopped, even when a test failed.
    """
    require_chromium()
    server, port = _start_lab(home)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            try:
                page.goto(f"http://127.0.0.1:{port}/lab/tree/{notebook.name}")
                run_all_cells(page)
                yield page
            finally:
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=ARTIFACTS / f"{notebook.stem}.png", full_page=True)
                browser.close()
    finally:
        _stop(server)


@contextmanager
def voila_page(command: Callable[[int], list], cwd: Path, home: Path) -> Iterator[Page]:
    """Run the Voila command line `command(port)` (it must serve on 127.0.0.1:port) from `cwd`, with Jupyter's dirs
    in `home`, open its page in headless Chromium and yield it once the HTML is there (Voila runs the notebook
    before it answers; the widgets draw after that).

    On exit a screenshot goes to test-artifacts/gallery.png, then the browser, the server and its kernel are
    stopped, even when a test failed.
    """
    require_chromium()
    port, log = _free_port(), home / "voila.log"
    with log.open("w") as out:
        server = subprocess.Popen(command(port), env=_jupyter_env(home), cwd=cwd, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_server(server, f"http://127.0.0.1:{port}/voila/templates/lab/static/index.css", log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            try:
                # not "load": that would also wait on the template's icon CSS from a CDN, slow or absent offline
                page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded", timeout=RUN_TIMEOUT_MS)
                yield page
            finally:
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=ARTIFACTS / "gallery.png", full_page=True)
                browser.close()
    finally:
        _stop(server)


def explorer(page: Page, index: int) -> Locator:
    """The `index`-th explorer on the page (its sliders, figure and text), in the generated notebook's order."""
    return page.locator(".explorer").nth(index)


def slider(scope: Locator, label: str) -> Locator:
    """Wait for the ipywidgets slider in `scope` whose description is exactly `label` and return its locator."""
    # a `has` locator is matched inside each candidate, so it is built from the page, not from the scope
    description = scope.page.locator(".widget-label", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
    found = scope.locator(".widget-slider", has=description)
    found.wait_for(timeout=TIMEOUT_MS)
    return found


def set_slider(scope: Locator, label: str, value: float) -> None:
    """Set the slider labelled `label` to `value` by typing into its editable readout and pressing Enter."""
    readout = slider(scope, label).locator(".widget-readout")
    readout.fill(str(value))
    readout.press("Enter")


def explorer_text(scope: Locator) -> Locator:
    """Where the explorer prints its numbers."""
    return scope.locator(".explorer-text")


def explorer_figure(scope: Locator) -> Locator:
    """The explorer's figure (an <img> whose src changes on every redraw)."""
    return scope.locator("img.explorer-figure")
