"""A benchmark for the SIGKILL test to kill: slow scripted jobs recording each start in a side file.

    python kill_target.py OUT SIDE_FILE PARALLEL

DIFFSCOPE_ORGANISMS must name a folder holding the fake organisms (see benchfakes).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchfakes import Factory, install_fake_pair, run_bench  # noqa: E402

ORGS = ["alpha", "beta"]
AGENTS = ["blackbox", "method"]
RUNS = 2
SLEEP_S = 0.3


def main() -> None:
    out, side_file, parallel = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    install_fake_pair()
    run_bench(
        ORGS,
        AGENTS,
        "scripted",
        runs=RUNS,
        parallel=parallel,
        out=out,
        provider_factory=Factory(side_file, sleep_s=SLEEP_S),
        progress=False,
    )


if __name__ == "__main__":
    main()
