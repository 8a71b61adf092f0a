"""Grading one benchmark job from its run log, and the grade file that records the verdict.

A grade file (`grades/ID.json`) holds the job's identity, the run id of the log it graded (so a
grade never outlives its log), the grader's name and the `Grade`. A run that failed with no
hypothesis is recorded as unscored with the run's error; a failed run that left a hypothesis (one
it recorded before failing) is graded like any other. A grader that crashes gives an unscored grade
marked `grader_error`, which the next resume or `grade_directory` grades again. When the hypothesis
cites its evidence (`Hypothesis.claims`), the grade's details list each claim with its tool call
ids and whether the grade credits it (`graders.keyfacts.credited_claims`), for the per-tool table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from diffscope.agent.log import RunLog, load_run_log
from diffscope.bench.config import FORMAT_VERSION
from diffscope.bench.layout import Job, grade_path, now_iso
from diffscope.graders import Grade, get_grader, grade_sync
from diffscope.graders.keyfacts import credited_claims
from diffscope.llm import Hypothesis
from diffscope.organisms.registry import all_organisms, with_built_ground_truth
from diffscope.organisms.schema import Organism
from diffscope.paths import write_json

GRADER_ERROR = "grader_error"


def resolve_organisms(names: Iterable[str]) -> dict[str, Organism]:
    """The named organisms with their built ground truth; ValueError naming the unknown ones."""
    known = all_organisms()
    names = list(names)
    missing = [name for name in names if name not in known]
    if missing:
        raise ValueError(
            f"unknown organism(s): {', '.join(missing)}; known: {', '.join(sorted(known))}. "
            "Add your own as YAML in a folder named by DIFFSCOPE_ORGANISMS"
        )
    return {name: with_built_ground_truth(known[name]) for name in names}


def check_grader(grader: str, organisms: dict[str, Organism]) -> None:
    """Build the grader once per organism so a bad name or a missing key fails before any run."""
    for organism in organisms.values():
        try:
            get_grader(grader, organism)
        except Exception as exc:  # a provider error for an LLM grader, a bad name, ...
            raise ValueError(f"cannot use grader {grader!r}: {exc}") from exc


def grade_log(log: RunLog, organism: Organism, grader: str) -> Grade:
    """The grade of one run log's final hypothesis (never raises)."""
    final = log.final
    run_details: dict[str, Any] = {"run_status": log.status}
    if log.error:
        run_details["run_error"] = log.error
    if final is None:
        return Grade.unscored("the run log has no final hypothesis", grader, **run_details)
    try:
        hypothesis = Hypothesis.model_validate(final.hypothesis)
    except ValueError as exc:
        return Grade.unscored(f"the run's hypothesis is invalid: {exc}", grader, **run_details)
    if log.status == "error" and not hypothesis.claims_text().strip():
        return Grade.unscored(
            f"the run failed before giving a hypothesis: {log.error or 'no reason recorded'}",
            grader,
            **run_details,
        )
    try:
        grade = grade_sync(get_grader(grader, organism), organism, hypothesis)
    except Exception as exc:  # a grader failure is recorded, and retried on the next resume
        return Grade.unscored(
            f"grading failed: {type(exc).__name__}: {exc}",
            grader,
            **{GRADER_ERROR: True},
            **run_details,
        )
    grade.details.update(run_details)
    if hypothesis.claims:
        credited = credited_claims(organism, hypothesis, grade)
        grade.details["claims"] = [
            {"text": c.text, "calls": list(c.calls), "credited": ok}
            for c, ok in zip(hypothesis.claims, credited, strict=True)
        ]
    return grade


def grade_record(job: Job, run_id: str | None, grader: str, grade: Grade) -> dict[str, Any]:
    """What a grade file holds."""
    return {
        "format_version": FORMAT_VERSION,
        "job": job.id,
        "organism": job.organism,
        "agent": job.agent,
        "run": job.run,
        "run_id": run_id,
        "grader": grader,
        "graded_at": now_iso(),
        "grade": grade.model_dump(mode="json"),
    }


def read_grade(path: Path) -> dict[str, Any] | None:
    """A grade file's record, or None when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("format_version") != FORMAT_VERSION:
            return None
        Grade.model_validate(data["grade"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return data


def read_log(path: Path) -> tuple[RunLog | None, str | None]:
    """`(log, None)`, or `(None, reason)` when the log cannot be read."""
    try:
        return load_run_log(path), None
    except (OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def needs_grade(grade_file: Path, log_file: Path) -> bool:
    """Whether a job with a log still needs grading: no grade, a stale one, or a grader crash."""
    record = read_grade(grade_file)
    if record is None:
        return True
    if record["grade"].get("details", {}).get(GRADER_ERROR):
        return True
    log, _ = read_log(log_file)
    return log is not None and record.get("run_id") != log.run_id


def grade_job(
    job: Job, log_file: Path, folder: Path, grader: str, organisms: dict[str, Organism]
) -> dict[str, Any]:
    """Grade a job's log and write the grade file atomically; returns the record written."""
    log, problem = read_log(log_file)
    if log is None:
        grade = Grade.unscored(f"the run log cannot be read: {problem}", grader)
        record = grade_record(job, None, grader, grade)
    else:
        grade = grade_log(log, organisms[job.organism], grader)
        record = grade_record(job, log.run_id, grader, grade)
    write_json(grade_path(folder, job), record)
    return record
