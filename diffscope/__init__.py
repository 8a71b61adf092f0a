"""diffscope: find what a fine-tune changed by diffing it against its base model.

Importing the package sets `OMP_WAIT_POLICY=PASSIVE` (unless the user set it) before torch starts
its OpenMP threads: with the default busy-waiting policy, two torch threads on a 2-core machine
that is busy with anything else wait on each other for most of their time (a training loop measured
here ran 7x slower with 2 threads than with 1 on a loaded machine, and 10x faster with PASSIVE).
It changes no result, only how idle threads wait.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
