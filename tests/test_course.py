"""course.py's commands, without installing or starting anything: which torch build the first install
takes on each platform and driver state, the JupyterLab and Voila command lines as root and without a display, the
test command's workers, and the closing note of a test run whose browser tests skipped."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("course", ROOT / "course.py")
course = importlib.util.module_from_spec(spec)
spec.loader.exec_module(course)

pytest_plugins = ["pytester"]

CPU = "https://download.pytorch.org/whl/cpu"


def never_probed(url):
    raise AssertionError(f"probed {url}, but this route needs no probe")


def test_torch_index_takes_the_cpu_build_on_linux_without_an_nvidia_driver():
    probed = []
    index, message = course.torch_index("linux", False, {}, lambda url: probed.append(url) or True)
    assert (index, probed) == (CPU, [CPU])
    assert "CPU build" in message and "200 MB" in message


def test_torch_index_falls_back_to_pypi_with_one_line_when_the_cpu_index_is_unreachable():
    index, message = course.torch_index("linux", False, {}, lambda url: False)
    assert index is None
    assert "cannot be reached" in message and CPU in message and "\n" not in message


def test_torch_index_takes_pypis_cuda_build_on_linux_with_an_nvidia_driver():
    index, message = course.torch_index("linux", True, {}, never_probed)
    assert index is None
    assert "CUDA build" in message and "GB" in message


@pytest.mark.parametrize("platform", ["darwin", "win32"])
@pytest.mark.parametrize("driver", [False, True])
def test_torch_index_takes_pypi_on_macos_and_windows(platform, driver):
    index, message = course.torch_index(platform, driver, {}, never_probed)
    assert index is None and "PyPI" in message


@pytest.mark.parametrize("platform, driver", [("linux", False), ("linux", True), ("darwin", False), ("win32", True)])
def test_torch_index_url_overrides_every_route(platform, driver):
    url = "https://download.pytorch.org/whl/cu126"
    index, message = course.torch_index(platform, driver, {"TORCH_INDEX_URL": url}, never_probed)
    assert index == url and url in message


def test_an_empty_torch_index_url_is_no_override():
    assert course.torch_index("linux", False, {"TORCH_INDEX_URL": ""}, lambda url: True)[0] == CPU


def test_reachable_is_false_when_nothing_answers():
    assert not course.reachable("http://127.0.0.1:9/", timeout=1)  # the discard port: connection refused
    assert not course.reachable("not a url")


@pytest.mark.parametrize("platform, env, expected", [
    ("linux", {}, False),
    ("linux", {"DISPLAY": ":0"}, True),
    ("linux", {"WAYLAND_DISPLAY": "wayland-0"}, True),
    ("darwin", {}, True),
    ("win32", {}, True),
])
def test_has_display_only_doubts_linux(platform, env, expected):
    assert course.has_display(platform, env) is expected


LAB = ["py", "-m", "jupyter", "lab", "notebooks/00_start_here.ipynb"]


def test_lab_command_as_a_user_with_a_display_is_plain_jupyter_lab():
    assert course.lab_command("py", is_root=False, has_display=True) == (LAB, [])


def test_lab_command_as_root_allows_root_and_warns_in_one_line():
    cmd, notes = course.lab_command("py", is_root=True, has_display=True)
    assert cmd == LAB + ["--allow-root"]
    assert len(notes) == 1 and "root" in notes[0]


def test_lab_command_without_a_display_starts_no_browser_and_says_to_open_the_url():
    cmd, notes = course.lab_command("py", is_root=False, has_display=False)
    assert cmd == LAB + ["--no-browser"]
    assert len(notes) == 1 and "URL" in notes[0]


def test_lab_command_as_root_in_a_headless_container_passes_both_flags():
    cmd, notes = course.lab_command("py", is_root=True, has_display=False)
    assert cmd == LAB + ["--allow-root", "--no-browser"] and len(notes) == 2


GALLERY = ["py", "-m", "voila", "notebooks/gallery.ipynb", "--Voila.ip=127.0.0.1", "--strip_sources=True"]


def test_gallery_command_serves_the_gallery_notebook_on_localhost_without_its_code():
    assert course.gallery_command("py", has_display=True) == (GALLERY, [])
    assert (ROOT / GALLERY[3]).exists()


def test_gallery_command_without_a_display_starts_no_browser_and_says_to_open_the_url():
    cmd, notes = course.gallery_command("py", has_display=False)
    assert cmd == GALLERY + ["--no-browser"]
    assert len(notes) == 1 and "URL" in notes[0]


def test_gallery_command_passes_extra_arguments_last_and_lets_them_replace_a_default():
    cmd, _ = course.gallery_command("py", has_display=True, extra=["--port=9000", "--Voila.ip=0.0.0.0"])
    assert cmd == [*GALLERY[:4], "--strip_sources=True", "--port=9000", "--Voila.ip=0.0.0.0"]


@pytest.mark.parametrize("cpus, workers, threads", [(2, "2", "1"), (4, "4", "1"), (16, "4", "4")])
def test_the_whole_suite_runs_one_worker_per_core_and_keeps_each_file_in_one(cpus, workers, threads):
    cmd, env = course.test_command("py", cpus, {"PATH": "/bin"})
    assert cmd == ["py", "-m", "pytest", "-n", workers, *course.PYTEST_ARGS]
    assert env == {"PATH": "/bin", "COURSE_FAST": "1", "OMP_NUM_THREADS": threads}
    assert course.test_command("py", cpus, {"OMP_NUM_THREADS": "3"})[1]["OMP_NUM_THREADS"] == "3"  # set: kept


def test_a_selection_or_one_core_runs_in_one_process():
    one = ["py", "-m", "pytest", *course.PYTEST_ARGS]
    assert course.test_command("py", 16, {}, ["-k", "x"]) == ([*one, "-k", "x"], {"COURSE_FAST": "1"})
    assert course.test_command("py", 1, {}) == (one, {"COURSE_FAST": "1"})


@pytest.fixture
def fake_venv(tmp_path, monkeypatch):
    """course.py's install steps pointed at a temporary .venv, with pip and the torch lookup faked; returns the
    commands it would run."""
    (tmp_path / "python").touch()
    monkeypatch.setattr(course, "PYTHON", tmp_path / "python")
    monkeypatch.setattr(course, "STAMP", tmp_path / ".course-installed")
    monkeypatch.setattr(course.sys, "platform", "linux")
    monkeypatch.setattr(course, "has_nvidia_driver", lambda: False)
    monkeypatch.setattr(course, "reachable", lambda url: True)
    monkeypatch.delenv("TORCH_INDEX_URL", raising=False)
    ran = []
    monkeypatch.setattr(course, "run", lambda *cmd, env=None: ran.append([str(c) for c in cmd]) or 0)
    return ran


def test_first_install_on_linux_without_a_driver_asks_pip_for_the_cpu_index(fake_venv, monkeypatch, capsys):
    monkeypatch.setattr(course.subprocess, "call", lambda cmd: 1)  # the venv has no torch yet
    course.ensure_venv()
    assert fake_venv == [[str(course.PYTHON), "-m", "pip", "install", "-e", ".[dev]", "--extra-index-url", CPU]]
    assert "CPU build" in capsys.readouterr().out


def test_an_install_over_an_existing_torch_keeps_it_and_probes_nothing(fake_venv, monkeypatch):
    monkeypatch.setattr(course.subprocess, "call", lambda cmd: 0)  # torch is there
    monkeypatch.setattr(course, "reachable", never_probed)
    course.ensure_venv()
    assert fake_venv == [[str(course.PYTHON), "-m", "pip", "install", "-e", ".[dev]"]]


def test_lab_as_root_on_a_headless_linux_runs_jupyter_with_both_flags(fake_venv, monkeypatch, capsys):
    monkeypatch.setattr(course, "ensure_venv", lambda: None)
    monkeypatch.setattr(course.os, "geteuid", lambda: 0, raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(course.sys, "argv", ["course.py", "lab"])
    with pytest.raises(SystemExit):
        course.main()
    assert fake_venv == [[str(course.PYTHON), *LAB[1:], "--allow-root", "--no-browser"]]
    assert "--allow-root" in capsys.readouterr().out


def test_gallery_as_root_on_a_headless_linux_runs_voila_without_a_browser(fake_venv, monkeypatch, capsys):
    monkeypatch.setattr(course, "ensure_venv", lambda: None)
    monkeypatch.setattr(course.os, "geteuid", lambda: 0, raising=False)  # Voila has no root check: no flag for it
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(course.sys, "argv", ["course.py", "gallery", "--port=9000"])
    with pytest.raises(SystemExit):
        course.main()
    assert fake_venv == [[str(course.PYTHON), *GALLERY[1:], "--no-browser", "--port=9000"]]
    assert "URL" in capsys.readouterr().out


SKIPPING_BROWSER_TESTS = """
import pytest

@pytest.mark.browser
def test_widget_one():
    pytest.skip("chromium not found at /nowhere: apt-get install chromium")

@pytest.mark.browser
def test_widget_two():
    pytest.skip("chromium not found at /nowhere: apt-get install chromium")

def test_other():
    pytest.skip("unrelated")
"""


def test_a_run_whose_browser_tests_skip_ends_by_saying_the_widgets_went_untested(pytester):
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    browser: real browser\n")
    pytester.makepyfile(test_widgets=SKIPPING_BROWSER_TESTS)
    result = pytester.runpytest()
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*= the widgets went untested in a real browser =*",
                                 "2 browser tests skipped: chromium not found at /nowhere: apt-get install chromium",
                                 "*course.py test -m browser"])


def test_a_run_without_browser_skips_says_nothing_about_widgets(pytester):
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    pytester.makepyfile(test_plain="def test_ok():\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "widgets went untested" not in result.stdout.str()
