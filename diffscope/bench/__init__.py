"""The benchmark: run investigators over organisms, grade them, and tabulate the results.

`run_benchmark(organisms, agents, model, grader, runs, parallel, out=...)` runs (or resumes) every
organism x agent x run job into a folder; `grade_directory(out, grader)` re-grades a folder's run
logs; `summarise(out)` computes the tables from the folder's files and writes `summary.json`,
`summary.md` and `report.html`.
"""

from diffscope.bench.layout import Job, plan_jobs
from diffscope.bench.runner import ProviderFactory, run_benchmark
from diffscope.bench.summary import BenchSummary, grade_directory, summarise

__all__ = [
    "BenchSummary",
    "Job",
    "ProviderFactory",
    "grade_directory",
    "plan_jobs",
    "run_benchmark",
    "summarise",
]
