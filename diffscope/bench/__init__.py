"""The benchmark: run investigators over organisms, grade them, and tabulate the results.

`run_benchmark(BenchConfig(...), out)` runs (or resumes) every organism x agent x run job into a
folder, whose `manifest.json` is that config; `grade_directory(out, grader)` re-grades a folder's
run logs; `summarise(out)` computes the tables (`stats`) from the folder's files and writes
`summary.json`, `summary.md` and `report.html` (`render`). `AGENTS` names the investigators.
"""

from diffscope.bench.config import AGENTS, AgentSpec, BenchConfig, Manifest, failed_checks
from diffscope.bench.layout import Job, plan_jobs
from diffscope.bench.runner import ProviderFactory, run_benchmark
from diffscope.bench.summary import BenchSummary, grade_directory, summarise

__all__ = [
    "AGENTS",
    "AgentSpec",
    "BenchConfig",
    "BenchSummary",
    "Job",
    "Manifest",
    "ProviderFactory",
    "failed_checks",
    "grade_directory",
    "plan_jobs",
    "run_benchmark",
    "summarise",
]
