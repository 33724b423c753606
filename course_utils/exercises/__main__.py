"""python -m course_utils.exercises grade FOLDER: check every exercise cell of the notebooks under FOLDER."""

import argparse
from collections import defaultdict

from .base import grade


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m course_utils.exercises",
                                     description="Check the exercise cells of a folder of submitted notebooks.")
    parser.add_argument("command", choices=["grade"])
    parser.add_argument("folder", help="a folder of .ipynb files (searched recursively, e.g. one folder per student)")
    args = parser.parse_args(argv)
    try:
        rows = grade(args.folder)
    except ValueError as err:
        parser.error(str(err))
    if not rows:
        print(f"no exercise cells in the notebooks under {args.folder}.")
    passed = defaultdict(int)
    for notebook, key, ok, message in rows:
        passed[notebook] += ok
        print(f"{notebook}  {key}  {'pass' if ok else 'FAIL'}  {message.splitlines()[0]}")
    totals = defaultdict(int)
    for notebook, *_ in rows:
        totals[notebook] += 1
    for notebook, total in totals.items():
        print(f"{notebook}: {passed[notebook]} of {total} exercises pass")


if __name__ == "__main__":
    main()
