"""The benchmark runner: every organism x agent x run index, resumable after any interruption.

Each combination is one job with a deterministic id (`ORGANISM__AGENT__rN`). A job runs one
investigation (`run_investigation`), which writes its log to `OUT/runs/ID.json` atomically when
it ends; the job then writes its grade to `OUT/grades/ID.json`. A call on an existing folder
resumes it: jobs with a log are never run again, logs without a (current) grade are graded, and
the temp files of writes cut short are removed, so even after SIGKILL every combination ends up
with exactly one log and one grade. A run that fails still leaves a log with the reason, and is
graded (its fallback hypothesis) or recorded as unscored with that reason. `manifest.json` holds
the settings; a resume with other settings is refused. The folder is locked while a process
works in it, and the tables are rewritten from the files at the end (see `summary`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from diffscope.agent.log import FinalAnswer, RunLog, now_iso
from diffscope.agent.loop import (
    AGENT_KINDS,
    AgentBudget,
    Transport,
    build_provider,
    fallback_hypothesis,
    run_investigation,
)
from diffscope.agent.providers import Provider
from diffscope.bench.grading import check_grader, grade_job, needs_grade, resolve_organisms
from diffscope.bench.layout import (
    AGENT_NAME,
    Job,
    clean_temp_files,
    dedupe,
    folder_lock,
    grade_path,
    grades_dir,
    log_path,
    make_config,
    open_manifest,
    plan_jobs,
)
from diffscope.bench.progress import JobProgress
from diffscope.bench.summary import BenchSummary, summarise
from diffscope.organisms.schema import Organism

ProviderFactory = Callable[[str, str, int], Provider]
"""`(organism, agent, run index) -> Provider`: a fresh provider for one job (tests, custom models)."""


def check_agents(agents: Sequence[str]) -> None:
    """Each agent must be a file-name-safe tool profile the server knows; ValueError otherwise."""
    from diffscope.tools import TOOLS, load_tool_modules

    load_tool_modules()
    for agent in agents:
        if not AGENT_NAME.match(agent):
            raise ValueError(
                f"agent {agent!r} is not a valid name: use 'blackbox', 'method' or a tool profile "
                "(letters, digits and . _ , + -)"
            )
        try:
            TOOLS.profile_names(agent)
        except ValueError as exc:
            raise ValueError(f"unknown agent {agent!r}: {exc}") from exc


def check_model(model: str, agents: Sequence[str], base_url: str | None) -> None:
    """Build the provider once per agent so a bad model name or a missing key fails up front."""
    for agent in agents:
        try:
            build_provider(model, agent, base_url)
        except Exception as exc:  # ProviderError and friends: a user mistake, said plainly
            raise ValueError(f"cannot use model {model!r} for agent {agent!r}: {exc}") from exc


def error_log(
    job: Job, model: str, budget: AgentBudget, transport: str, exc: BaseException
) -> RunLog:
    """The log of a job whose investigation could not even produce a result."""
    log = RunLog(
        organism=job.organism,
        agent=job.agent,
        profile=job.agent,
        transport=transport,
        model=model,
        budget=budget.model_dump(),
        status="error",
        stop_reason="error",
        error=f"{type(exc).__name__}: {exc}",
    )
    log.final = FinalAnswer(
        hypothesis=fallback_hypothesis("").model_dump(mode="json"), submitted_by="fallback"
    )
    log.ended_at = now_iso()
    return log


def run_job(
    job: Job,
    out: Path,
    *,
    model: str,
    budget: AgentBudget,
    transport: Transport,
    base_url: str | None,
    provider_factory: ProviderFactory | None,
) -> Path:
    """Run one job's investigation and leave its log at `runs/ID.json` (also when it fails)."""
    target = log_path(out, job)
    try:
        provider = provider_factory(job.organism, job.agent, job.run) if provider_factory else None
        run_investigation(
            job.organism,
            job.agent,
            model,
            budget,
            out=target,
            transport=transport,
            base_url=base_url,
            provider=provider,
        )
    except Exception as exc:  # anything the loop itself did not turn into a logged failure
        error_log(job, model, budget, transport, exc).save(target)
    if not target.exists():  # pragma: no cover - run_investigation always saves
        error_log(job, model, budget, transport, RuntimeError("no log was written")).save(target)
    return target


def run_benchmark(
    organisms: Sequence[str],
    agents: Sequence[str] = AGENT_KINDS,
    model: str = "heuristic",
    grader: str | None = None,
    runs: int = 1,
    parallel: int = 1,
    *,
    out: Path,
    budget: AgentBudget | None = None,
    base_url: str | None = None,
    provider_factory: ProviderFactory | None = None,
    progress: bool = True,
    transport: Transport = "inprocess",
) -> BenchSummary:
    """Run (or resume) a benchmark in `out` and return its summary, computed from the files.

    `organisms` x `agents` x `runs` jobs run `parallel` at a time (threads; each job loads its
    own model pair). `grader` is a grader name (None: the offline key-fact grader);
    `provider_factory(organism, agent, run)` replaces the provider built from `model`.
    ValueError for a user mistake: an unknown organism, agent, model or grader, bad counts,
    or an `out` folder made with other settings.
    """
    organisms, agents = dedupe(organisms), dedupe(agents)
    if not organisms:
        raise ValueError("name at least one organism")
    if not agents:
        raise ValueError("name at least one agent (e.g. blackbox, method)")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be a whole number of at least 1, not {runs!r}")
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ValueError(f"parallel must be a whole number of at least 1, not {parallel!r}")
    if transport not in ("inprocess", "stdio"):
        raise ValueError(f"unknown transport {transport!r}; choose 'inprocess' or 'stdio'")
    budget = budget or AgentBudget()
    model = model.strip()
    if not model:
        raise ValueError("name a model (e.g. heuristic, openai/gpt-5)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; name a folder")

    config = make_config(organisms, agents, model, grader, runs, budget.model_dump())
    known = resolve_organisms(organisms)
    check_agents(agents)
    if provider_factory is None:
        check_model(model, agents, base_url)
    check_grader(config["grader"], known)
    options = {"transport": transport, "base_url": base_url, "parallel": parallel}

    with folder_lock(out):
        manifest = open_manifest(out, config, options)
        clean_temp_files(out)
        folder = grades_dir(out, config["grader"], manifest["config"]["grader"])
        jobs = plan_jobs(organisms, agents, runs)
        to_run = [job for job in jobs if not log_path(out, job).exists()]
        to_grade = [
            job
            for job in jobs
            if log_path(out, job).exists()
            and needs_grade(grade_path(folder, job), log_path(out, job))
        ]
        done = len(jobs) - len(to_run) - len(to_grade)
        job_options: dict[str, Any] = {
            "model": model,
            "budget": budget,
            "transport": transport,
            "base_url": base_url,
            "provider_factory": provider_factory,
        }
        with JobProgress(progress, len(jobs), "benchmark", done=done) as bar:
            if done:
                bar.note(f"resuming {out}: {done} of {len(jobs)} jobs already done")
            for job in to_grade:
                grade_job(job, log_path(out, job), folder, config["grader"], known)
                bar.advance()
            _run_all(to_run, out, folder, config["grader"], known, parallel, bar, job_options)
        return summarise(out)


def _run_and_grade(
    job: Job,
    out: Path,
    folder: Path,
    grader: str,
    organisms: dict[str, Organism],
    options: dict[str, Any],
) -> str:
    """Run a job, then grade it; returns the run's status for the progress line."""
    path = run_job(job, out, **options)
    record = grade_job(job, path, folder, grader, organisms)
    return str(record["grade"]["details"].get("run_status", "error"))


def _run_all(
    jobs: list[Job],
    out: Path,
    folder: Path,
    grader: str,
    organisms: dict[str, Organism],
    parallel: int,
    bar: JobProgress,
    options: dict[str, Any],
) -> None:
    """Run the jobs, `parallel` at a time, advancing the bar as each one finishes."""
    counts = {"ran": 0, "failed": 0}

    def finished(status: str) -> None:
        counts["ran"] += 1
        counts["failed"] += status == "error"
        label = f"benchmark: ran {counts['ran']}/{len(jobs)}"
        bar.advance(label + (f", {counts['failed']} failed" if counts["failed"] else ""))

    if parallel == 1 or len(jobs) <= 1:
        for job in jobs:
            finished(_run_and_grade(job, out, folder, grader, organisms, options))
        return
    workers = min(parallel, len(jobs))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="diffscope-bench")
    pending: set[Future[str]] = set()
    try:
        for job in jobs:
            pending.add(pool.submit(_run_and_grade, job, out, folder, grader, organisms, options))
        while pending:
            ready, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in ready:
                finished(future.result())
    except BaseException:  # Ctrl-C: start nothing new; jobs in flight finish and keep their logs
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
