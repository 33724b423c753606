"""What every exercise shares: a registry of checks, the student-side `check` and `hint`, and reading the exercise
cells of a notebook (or the blocks of a solutions file) so that a folder of submissions can be graded.

An exercise cell is a notebook code cell whose metadata holds {"exercise": "04.3"}; it defines one name (a function,
a value or a choice) that the check reads. A solutions file holds the same cells, filled in, as blocks that open with
`# %% exercise 04.3` (the percent format that Jupytext and VS Code read as cells).
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NOT_ANSWERED = "not answered yet: fill in the exercise cell above, run it, then run this check again."
BLOCK = re.compile(r"^# %% exercise (\S+)[ \t]*$", re.MULTILINE)


class Wrong(Exception):
    """What is wrong with an answer, in a sentence a student can act on."""


@dataclass(frozen=True)
class Exercise:
    """One exercise: its key ("lesson.number"), the name its cell defines, a hint, and the check, which takes the
    answer and returns a message on success or raises Wrong."""

    key: str
    answer: str
    hint: str
    verify: Callable


EXERCISES = {}


def exercise(key: str, answer: str, hint: str):
    """Register the decorated function as the check of exercise `key`, whose cell defines `answer`."""

    def register(verify):
        if key in EXERCISES:
            raise ValueError(f"exercise {key} is registered twice.")
        EXERCISES[key] = Exercise(key, answer, hint, verify)
        return verify

    return register


def get(key) -> Exercise:
    """The exercise `key` (e.g. "04.3"); a clear error lists the keys there are."""
    if key not in EXERCISES:
        raise ValueError(f"no exercise {key!r}; the exercises are {', '.join(sorted(EXERCISES))}.")
    return EXERCISES[key]


def answered(value):
    """`value`, or Wrong if it is still the scaffold's placeholder (`...` or None)."""
    if value is ... or value is None:
        raise Wrong(NOT_ANSWERED)
    return value


def call(function, *args, **kwargs):
    """Call a student's function; an unfilled body (returning None, or raising NotImplementedError) is Wrong."""
    if not callable(function):
        raise Wrong(f"expected a function, got {type(function).__name__}: define it with `def` in the cell above.")
    return answered(function(*args, **kwargs))


def choice(value, options: tuple) -> str:
    """A student's choice among `options`, or Wrong naming the allowed ones."""
    answered(value)
    if value not in options:
        raise Wrong(f"answer one of {', '.join(map(repr, options))}; got {value!r}.")
    return value


def ratio(value, expected: float, what: str, rel: float = 0.01) -> float:
    """A student's ratio, or Wrong saying it is not `what` (the expected value, within a relative `rel`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value / expected - 1) > rel:
        raise Wrong(f"{value!r} is not {what}.")
    return value


def evaluate(key: str, answer) -> tuple:
    """(passed, message) for `answer` to exercise `key`; never raises for a wrong answer."""
    exercise = get(key)
    try:
        return True, exercise.verify(answered(answer)) or "correct."
    except Wrong as err:
        return False, str(err)
    except NotImplementedError:
        return False, NOT_ANSWERED
    except Exception as err:  # the student's code failed: say how, do not stop the notebook
        return False, f"your answer raised {type(err).__name__}: {err}"


def check(key: str, answer) -> bool:
    """Check `answer` to exercise `key` and print what is right or wrong (a wrong answer never raises, so a notebook
    with unfilled exercises still runs top to bottom); returns whether it passed."""
    passed, message = evaluate(key, answer)
    if passed:
        print(f"✓ Exercise {key}: {message}")
    else:
        print(f"✗ Exercise {key}: {message}\n  Stuck? hint({key!r}) gives a hint.")
    return passed


def hint(key: str) -> None:
    """Print the hint of exercise `key`."""
    print(f"Hint for exercise {key}: {get(key).hint}")


def exercise_cells(path) -> dict:
    """{key: source} of the exercise cells in a notebook (.ipynb) or the blocks of a solutions file (.py)."""
    path = Path(path)
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return {cell["metadata"]["exercise"]: "".join(cell["source"]) for cell in cells
                if cell["cell_type"] == "code" and "exercise" in cell.get("metadata", {})}
    if path.suffix == ".py":
        parts = BLOCK.split(path.read_text())  # [preamble, key, source, key, source, ...]
        return dict(zip(parts[1::2], parts[2::2]))
    raise ValueError(f"exercise cells come from a notebook (.ipynb) or a solutions file (.py), got {path}.")


def run_cell(key: str, source: str) -> tuple:
    """Run an exercise cell's source in a fresh namespace and check the name it defines: (passed, message)."""
    import matplotlib

    matplotlib.use("Agg")  # a cell may draw; grading shows nothing
    namespace = {"__name__": f"exercise_{key.replace('.', '_')}"}
    try:
        exec(compile(source, f"<exercise {key}>", "exec"), namespace)
    except Exception as err:
        return False, f"the cell raised {type(err).__name__}: {err}"
    name = get(key).answer
    if name not in namespace:
        return False, f"the cell defines no `{name}`; the check reads that name."
    return evaluate(key, namespace[name])


def grade(folder) -> list:
    """Check every exercise cell of every notebook under `folder`: rows of (notebook, key, passed, message)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"grade takes a folder of submitted notebooks; {folder} is not a folder.")
    rows = []
    for notebook in sorted(folder.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in notebook.parts:
            continue
        for key, source in exercise_cells(notebook).items():
            rows.append((str(notebook.relative_to(folder)), key, *run_cell(key, source)))
    return rows
