#!/usr/bin/env python3
"""The course's two commands, on any machine that has python3 (Linux, macOS, Windows):

    python3 course.py lab     set everything up in .venv (first run only) and open the lessons in JupyterLab
    python3 course.py test    set everything up and run the whole test suite: unit tests and every notebook

Extra arguments after `test` go to pytest (e.g. `python3 course.py test -k tokenizer`).
Env TORCH_INDEX_URL picks the torch build on first install (e.g. https://download.pytorch.org/whl/cpu).
"""

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
STAMP = VENV / ".course-installed"
PYTEST_ARGS = ["--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=600", "--durations=10", "tests", "notebooks"]


def run(*cmd, env=None):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.call([str(c) for c in cmd], cwd=ROOT, env=env)


def ensure_venv():
    """Create .venv and install the course with its dev extra, again only when pyproject.toml changes."""
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.create(VENV, with_pip=True)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    extra = ["--extra-index-url", os.environ["TORCH_INDEX_URL"]] if os.environ.get("TORCH_INDEX_URL") else []
    if run(PYTHON, "-m", "pip", "install", "-e", ".[dev]", *extra) != 0:
        sys.exit("installing the course into .venv failed; see pip's message above.")
    STAMP.write_text(wanted)


def main():
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command not in ("lab", "test"):
        sys.exit(__doc__)
    ensure_venv()
    if command == "lab":
        sys.exit(run(PYTHON, "-m", "jupyter", "lab", "notebooks/00_start_here.ipynb"))
    env = {**os.environ, "COURSE_FAST": "1"}
    sys.exit(run(PYTHON, "-m", "pytest", *PYTEST_ARGS, *sys.argv[2:], env=env))


if __name__ == "__main__":
    main()
