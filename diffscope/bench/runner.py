"""The benchmark runner: every organism x agent x run index, resumable after any interruption.

Each combination is one job with a deterministic id (`ORGANISM__AGENT__rN`). A job runs one
investigation (`bench.investigate.run_investigation`, over the organism's workspace), which writes
its log to `OUT/runs/ID.json` atomically when it ends; the job then writes its grade to
`OUT/grades/ID.json`. A call on an existing folder resumes it: jobs with a readable log are never
run again, a log that cannot be read (truncated, garbled) is set aside as
`runs/ID.json.unreadable-TIMESTAMP` and its job run again, logs without a (current) grade are
graded, and the temp files of writes cut short are removed, so even after SIGKILL every
combination ends up with exactly one log and one grade. A run that fails
still leaves a log with the reason, and is graded (its fallback hypothesis) or recorded as unscored
with that reason. `manifest.json` holds the `BenchConfig`; a resume with other settings is refused.
The folder is locked while a process works in it, and the tables are rewritten from the files at
the end (see `summary`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from diffscope.agent.answers import fallback_hypothesis
from diffscope.agent.budget import AgentBudget
from diffscope.agent.log import FinalAnswer, RunLog, now_iso
from diffscope.agent.run import Transport, build_provider
from diffscope.bench.config import MODEL_CHOICES, BenchConfig, agent_spec
from diffscope.bench.grading import (
    check_grader,
    grade_job,
    needs_grade,
    read_log,
    resolve_organisms,
)
from diffscope.bench.investigate import run_investigation
from diffscope.bench.layout import (
    Job,
    clean_temp_files,
    folder_lock,
    grade_path,
    grades_dir,
    log_path,
    open_manifest,
    plan_jobs,
)
from diffscope.bench.progress import JobProgress
from diffscope.bench.summary import BenchSummary, summarise
from diffscope.llm import Provider
from diffscope.organisms.schema import Organism

ProviderFactory = Callable[[str, str, int], Provider]
"""`(organism, agent, run index) -> Provider`: a fresh provider for one job (tests, custom models)."""


def check_agents(agents: Sequence[str]) -> None:
    """Each agent's tool profile (see `AGENTS`) must be one the server knows; ValueError otherwise."""
    from diffscope.server.run import check_profile

    for agent in agents:
        try:
            check_profile(agent_spec(agent).profile)
        except ValueError as exc:
            raise ValueError(f"unknown agent {agent!r}: {exc}") from exc


def check_model_name(model: str, agent: str, base_url: str | None = None) -> None:
    """Build `agent`'s provider for `model` once (no request), so a bad name or a missing key
    fails up front: ValueError saying why, listing the choices (heuristic among them)."""
    if "/" not in model and model.strip().lower() != "heuristic":
        raise ValueError(f"unknown model {model!r}; choose {MODEL_CHOICES}")
    try:
        build_provider(model, agent, base_url)
    except Exception as exc:  # ProviderError and friends: a user mistake, said plainly
        raise ValueError(f"cannot use model {model!r} (agent {agent!r}): {exc}") from exc


def check_model(config: BenchConfig) -> None:
    """`check_model_name` for each agent of the benchmark, with the model it runs."""
    for agent in config.agents:
        check_model_name(config.model_for(agent), agent, config.base_url)


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
    config: BenchConfig,
    out: Path,
    *,
    provider_factory: ProviderFactory | None = None,
    progress: bool = True,
) -> BenchSummary:
    """Run (or resume) the benchmark `config` describes in `out`; its summary, from the files.

    The organisms x agents x runs jobs run `config.parallel` at a time (threads; each job loads
    its own model pair). `provider_factory(organism, agent, run)` replaces the provider built
    from the model. ValueError for a user mistake: an unknown organism, agent, model or grader,
    or an `out` folder made with other settings (a bad `BenchConfig` fails when it is built).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; name a folder")
    known = resolve_organisms(config.organisms)
    check_agents(config.agents)
    if provider_factory is None:
        check_model(config)
    check_grader(config.grader, known)

    with folder_lock(out):
        manifest = open_manifest(out, config)
        clean_temp_files(out)
        folder = grades_dir(out, config.grader, manifest.config.grader)
        jobs = plan_jobs(config.organisms, config.agents, config.runs)
        unreadable = set_aside_unreadable_logs(out, jobs, folder)
        to_run = [job for job in jobs if not log_path(out, job).exists()]
        to_grade = [
            job
            for job in jobs
            if log_path(out, job).exists()
            and needs_grade(grade_path(folder, job), log_path(out, job))
        ]
        done = len(jobs) - len(to_run) - len(to_grade)
        job_options: dict[str, Any] = {
            "config": config,
            "provider_factory": provider_factory,
        }
        with JobProgress(progress, len(jobs), "benchmark", done=done) as bar:
            if done:
                bar.note(f"resuming {out}: {done} of {len(jobs)} jobs already done")
            for job_id, (aside, reason) in unreadable.items():
                bar.note(
                    f"{job_id}: its run log cannot be read ({reason}); set aside as "
                    f"{aside.name}, running it again"
                )
            for organism, reason in config.excluded().items():
                bar.note(
                    f"{organism}: behavioural check failed ({reason}); it runs but is left out "
                    "of the overall numbers (--include-failed to count it)"
                )
            for job in to_grade:
                grade_job(job, log_path(out, job), folder, config.grader, known)
                bar.advance()
            _run_all(to_run, out, folder, config.grader, known, config.parallel, bar, job_options)
        return summarise(out)


def set_aside_unreadable_logs(
    out: Path, jobs: Sequence[Job], folder: Path
) -> dict[str, tuple[Path, str]]:
    """Move each job's unreadable run log (truncated, garbled, not a log) aside as
    `runs/ID.json.unreadable-TIMESTAMP` and drop its grade, so the job runs again; returns
    `{job id: (where the log went, why it could not be read)}`."""
    found: dict[str, tuple[Path, str]] = {}
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for job in jobs:
        path = log_path(out, job)
        if not path.exists():
            continue
        log, problem = read_log(path)
        if log is not None:
            continue
        aside = path.with_name(f"{path.name}.unreadable-{stamp}")
        os.replace(path, aside)
        grade_path(folder, job).unlink(missing_ok=True)
        found[job.id] = (aside, problem or "unknown reason")
    return found


def _run_and_grade(
    job: Job,
    out: Path,
    folder: Path,
    grader: str,
    organisms: dict[str, Organism],
    options: dict[str, Any],
) -> str:
    """Run a job, then grade it; returns the run's status for the progress line."""
    config: BenchConfig = options["config"]
    path = run_job(
        job,
        out,
        model=config.model_for(job.agent),
        budget=config.budget,
        transport=config.transport,
        base_url=config.base_url,
        provider_factory=options["provider_factory"],
    )
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
