"""Every exercise: its reference solution passes its check, its unfilled scaffold (as committed in the notebook) fails
it, and the check never stops a notebook. `pytest -k exercise` selects them."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils.exercises import EXERCISES, check, exercise_cells, grade, hint, run_cell
from course_utils.exercises.base import NOT_ANSWERED

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = {path.stem: path for path in (REPO / "solutions").glob("[0-9][0-9]_*.py")}


def cells(kind: str) -> dict:
    """{key: source} over every notebook's exercise cells ("scaffold") or every solutions file's blocks."""
    paths = NOTEBOOKS if kind == "scaffold" else SOLUTIONS.values()
    found = {}
    for path in paths:
        for key, source in exercise_cells(path).items():
            assert key not in found, f"exercise {key} appears twice"
            found[key] = source
    return found


SCAFFOLDS, REFERENCE = cells("scaffold"), cells("solution")


def test_exercise_every_check_has_one_scaffold_and_one_solution():
    assert sorted(SCAFFOLDS) == sorted(REFERENCE) == sorted(EXERCISES)
    for notebook in NOTEBOOKS:
        assert notebook.stem in SOLUTIONS, f"{notebook.name} has exercises but no solutions/{notebook.stem}.py"
        assert all(key.startswith(notebook.name[:2] + ".") for key in exercise_cells(notebook))


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_exercise_reference_solution_passes(key):
    passed, message = run_cell(key, REFERENCE[key])
    assert passed, f"the reference solution of {key} fails its check: {message}"


@pytest.mark.parametrize("key", sorted(EXERCISES))
def test_exercise_unfilled_scaffold_fails_with_a_message(key):
    passed, message = run_cell(key, SCAFFOLDS[key])
    assert not passed and message == NOT_ANSWERED, f"the scaffold of {key} is not refused as unanswered: {message}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercise_each_scaffold_is_followed_by_its_check(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    for i, cell in enumerate(cells):
        key = cell["metadata"].get("exercise")
        if key:
            assert "".join(cells[i + 1]["source"]) == f'check("{key}", {EXERCISES[key].answer})'
            assert "exercise" in cell["metadata"].get("tags", [])


def test_exercise_wrong_answers_say_what_is_wrong_and_never_raise(capsys):
    assert check("01.1", (26, 4))
    assert not check("01.1", (26, 2))
    assert "the jump 2 is not" in capsys.readouterr().out
    assert not check("01.1", (18, 4))
    assert "the field 18 is not right" in capsys.readouterr().out
    assert not check("01.2", lambda target, every: 1 / 0)  # the student's code fails: reported, not raised
    assert "raised ZeroDivisionError" in capsys.readouterr().out
    assert not check("01.4", "wide")
    out = capsys.readouterr().out
    assert "answer one of 'wider', 'narrower'" in out and "hint('01.4')" in out
    hint("01.1")
    assert "r += (k_eff - 1) * jump" in capsys.readouterr().out


def test_exercise_a_wrong_function_is_shown_the_failing_case(capsys):
    import math

    assert not check("01.3", lambda depth: math.sqrt(depth))  # forgot the variance 2/3 of one box filter
    assert "predicted_std(1) = 1.0, but the measured std of 1 box filters is 0.816 px" in capsys.readouterr().out
    assert not check("00.3", lambda velocity, x, steps: x + velocity(x, x.new_zeros(len(x))))  # one step, always
    assert "with 5 step(s) your samples differ" in capsys.readouterr().out


def test_exercise_unknown_key_is_an_error_that_lists_the_keys():
    with pytest.raises(ValueError, match=r"no exercise '9\.9'; the exercises are 00\.1, 00\.2"):
        check("9.9", 1)


def test_exercise_grade_command_checks_a_folder_of_submissions(tmp_path):
    """A student's filled notebook passes, an untouched one fails, and a cell that raises is reported."""
    source = REPO / "notebooks" / "01_receptive_fields.ipynb"
    nb = json.loads(source.read_text())
    for cell in nb["cells"]:
        key = cell["metadata"].get("exercise")
        if key in ("01.1", "01.2", "01.3"):
            cell["source"] = REFERENCE[key]
        elif key == "01.4":
            cell["source"] = "after_training = undefined_name"
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / source.name).write_text(json.dumps(nb))
    (tmp_path / "bob").mkdir()
    shutil.copy(source, tmp_path / "bob" / source.name)
    rows = {(Path(notebook).parent.name, key): (ok, message) for notebook, key, ok, message in grade(tmp_path)}
    assert [rows[("alice", k)][0] for k in ("01.1", "01.2", "01.3", "01.4")] == [True, True, True, False]
    assert rows[("alice", "01.4")][1] == "the cell raised NameError: name 'undefined_name' is not defined"
    assert not any(rows[("bob", k)][0] for k in ("01.1", "01.2", "01.3", "01.4"))

    run = subprocess.run([sys.executable, "-m", "course_utils.exercises", "grade", str(tmp_path / "bob")],
                         capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0 and "01_receptive_fields.ipynb: 0 of 4 exercises pass" in run.stdout
    missing = subprocess.run([sys.executable, "-m", "course_utils.exercises", "grade", str(tmp_path / "nobody")],
                             capture_output=True, text=True, cwd=REPO)
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
