"""Exercises that check themselves. In a notebook a student fills an exercise cell, then

    check("04.3", answer)     # says what is right or wrong, never raises
    hint("04.3")              # a nudge

The reference solutions live in solutions/ (outside the notebooks); an instructor checks a folder of submitted
notebooks with `python -m course_utils.exercises grade FOLDER`. One module per lesson holds its checks.
"""

from . import lesson_00, lesson_01, lesson_02, lesson_03, lesson_04, lesson_05, lesson_06, lesson_07  # noqa: F401  (each registers its checks)
from .base import EXERCISES, Exercise, Wrong, check, evaluate, exercise_cells, grade, hint, run_cell

__all__ = ["EXERCISES", "Exercise", "Wrong", "check", "evaluate", "exercise_cells", "grade", "hint", "run_cell"]
