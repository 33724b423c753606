#!/usr/bin/env python3
"""The course's commands, on any machine that has python3 (Linux, macOS, Windows):

    python3 course.py lab       set everything up in .venv (first run only) and open the lessons in JupyterLab
    python3 course.py test      set everything up and run the whole test suite: unit tests and every notebook
    python3 course.py gallery   serve every explorer on one page without code (Voila, on 127.0.0.1), for lecturing

Extra arguments after `test` go to pytest (e.g. `python3 course.py test -k tokenizer`), after `gallery` to Voila
(e.g. `python3 course.py gallery --port=9000`). The whole suite runs in up to 4 processes (pytest-xdist, one per
core, each test file in one process); a run given extra arguments runs in one process unless they say `-n N`.
The first install picks the torch build: on Linux without an NVIDIA driver the CPU build from PyTorch's CPU index,
elsewhere the default one from PyPI. Env TORCH_INDEX_URL overrides (an index URL from pytorch.org's selector).
"""

import hashlib
import os
import shutil
import subprocess
import sys
import urllib.request
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
STAMP = VENV / ".course-installed"
PYTEST_ARGS = ["--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=600", "--durations=10", "tests", "notebooks"]
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
CUDA_SIZE = "several GB download, about 6 GB venv"
GALLERY = "notebooks/gallery.ipynb"
GALLERY_OPTIONS = {"--Voila.ip": "127.0.0.1", "--strip_sources": "True"}  # Voila's port: 8866, or the next free one


def torch_index(platform, has_nvidia_driver, env, reachable):
    """Choose where the first install takes torch from; returns (extra index URL or None for PyPI, a line to print).

    platform is sys.platform; env the environment; reachable(url) -> bool probes an index and is called only
    on the CPU route (Linux without an NVIDIA driver).
    """
    if env.get("TORCH_INDEX_URL"):
        return env["TORCH_INDEX_URL"], f"installing torch from TORCH_INDEX_URL={env['TORCH_INDEX_URL']}"
    if not platform.startswith("linux"):
        return None, "installing torch from PyPI (its build for this system, a few hundred MB download)"
    if has_nvidia_driver:
        return None, f"NVIDIA driver found: installing torch's CUDA build from PyPI ({CUDA_SIZE})"
    if not reachable(CPU_INDEX):
        return None, f"{CPU_INDEX} cannot be reached: installing torch from PyPI instead, the CUDA build ({CUDA_SIZE})"
    return CPU_INDEX, "no NVIDIA driver: installing torch's CPU build (about 200 MB download, 1.5 GB venv in all)"


def has_nvidia_driver():
    """Linux's sign of an NVIDIA driver: its /proc entry, or nvidia-smi on PATH."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def reachable(url, timeout=5):
    """True when `url` answers within `timeout` seconds (headers only; the body is not read)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status < 400
    except (OSError, ValueError):
        return False


def lab_command(python, is_root, has_display):
    """The JupyterLab command line, and the lines to print before it: --allow-root as root, --no-browser without a
    display."""
    cmd, notes = [python, "-m", "jupyter", "lab", "notebooks/00_start_here.ipynb"], []
    if is_root:
        cmd.append("--allow-root")
        notes.append("warning: running as root, so Jupyter gets --allow-root (fine in a container; else use your user)")
    if not has_display:
        cmd.append("--no-browser")
        notes.append("no display, so no browser starts: open the http://127.0.0.1:... URL that Jupyter prints below")
    return cmd, notes


def gallery_command(python, has_display, extra=()):
    """The Voila command line that serves notebooks/gallery.ipynb without its code on 127.0.0.1, and the lines to
    print before it: --no-browser without a display. `extra` goes last (e.g. --port=9000); an option it names
    replaces the default (e.g. --Voila.ip=0.0.0.0), since Voila rejects an option given twice.

    Voila, unlike Jupyter, has no root check, so root needs no flag."""
    named = {arg.split("=", 1)[0] for arg in extra}
    cmd = [python, "-m", "voila", GALLERY, *(f"{opt}={value}" for opt, value in GALLERY_OPTIONS.items()
                                            if opt not in named)]
    notes = []
    if not has_display:
        cmd.append("--no-browser")
        notes.append("no display, so no browser starts: open the http://127.0.0.1:... URL that Voila prints below")
    return cmd + list(extra), notes


def has_display(platform, env):
    """Linux needs an X or Wayland display to open a browser; macOS and Windows always have one."""
    return not platform.startswith("linux") or bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def test_command(python, cpus, env, extra=()):
    """The pytest command line and its environment: FAST mode; for the whole suite (no `extra` arguments) on a machine
    with several cores, one worker per core (at most 4), each test file in one worker (a notebook's cells share a
    kernel), each worker on cores / workers torch threads unless OMP_NUM_THREADS is set. A selection (`extra`, e.g.
    -k tokenizer) runs in one process: starting workers would cost more than it saves."""
    env = {**env, "COURSE_FAST": "1"}
    workers = 1 if extra else min(cpus, 4)
    parallel = ["-n", str(workers)] if workers > 1 else []  # pyproject's addopts: --dist loadfile
    if parallel:
        env.setdefault("OMP_NUM_THREADS", str(cpus // workers))
    return [python, "-m", "pytest", *parallel, *PYTEST_ARGS, *extra], env


def run(*cmd, env=None):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, env=env)


def ensure_venv():
    """Create .venv and install the course with its dev extra, again only when pyproject.toml changes.

    torch's build is chosen only while .venv has none; a torch already there is kept."""
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    extra = []
    find_torch = "import importlib.util, sys; sys.exit(not importlib.util.find_spec('torch'))"
    if subprocess.call([PYTHON, "-c", find_torch]) != 0:  # no torch in .venv yet
        index, message = torch_index(sys.platform, has_nvidia_driver(), os.environ, reachable)
        print(message, flush=True)
        extra = ["--extra-index-url", index] if index else []
    else:
        print("torch is already in .venv: keeping it", flush=True)
    if run(PYTHON, "-m", "pip", "install", "-e", ".[dev]", *extra) != 0:
        sys.exit("installing the course into .venv failed; see pip's message above.")
    STAMP.write_text(wanted)


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in ("lab", "test", "gallery"):
        sys.exit(__doc__)
    ensure_venv()
    if command == "gallery":
        cmd, notes = gallery_command(PYTHON, has_display(sys.platform, os.environ), sys.argv[2:])
        for note in notes:
            print(note, flush=True)
        sys.exit(run(*cmd))
    if command == "lab":
        cmd, notes = lab_command(PYTHON, hasattr(os, "geteuid") and os.geteuid() == 0,
                                 has_display(sys.platform, os.environ))
        for note in notes:
            print(note, flush=True)
        sys.exit(run(*cmd))
    cmd, env = test_command(PYTHON, os.cpu_count() or 1, os.environ, sys.argv[2:])
    sys.exit(run(*cmd, env=env))


if __name__ == "__main__":
    main()
