"""pytest setup shared by unit tests and notebooks: the suite always runs in FAST mode.

The notebook kernels that nbval starts inherit this environment, so they run FAST too. When the real-browser
widget tests skip (no Chromium), the run ends with a section that says so and what to install.
"""

import os

os.environ.setdefault("COURSE_FAST", "1")


def pytest_terminal_summary(terminalreporter):
    """Make skipped browser tests loud: the widgets were not tested, and this is what to install."""
    skipped = [report for report in terminalreporter.stats.get("skipped", []) if "browser" in report.keywords]
    if not skipped:
        return
    reason = skipped[0].longrepr[2] if isinstance(skipped[0].longrepr, tuple) else str(skipped[0].longrepr)
    terminalreporter.write_sep("=", "the widgets went untested in a real browser", yellow=True, bold=True)
    terminalreporter.write_line(f"{len(skipped)} browser tests skipped: {reason.removeprefix('Skipped: ')}")
    terminalreporter.write_line("once it is there, run them alone: python3 course.py test -m browser")
