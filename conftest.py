"""pytest setup shared by unit tests and notebooks: the suite always runs in FAST mode.

The notebook kernels that nbval starts inherit this environment, so they run FAST too.
"""

import os

os.environ.setdefault("COURSE_FAST", "1")
