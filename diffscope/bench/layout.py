"""The on-disk layout of a benchmark folder: jobs, the manifest, grade folders, the lock.

    OUT/manifest.json            the `BenchConfig` (see `config`); a resume must repeat it
    OUT/runs/ID.json             one run log per job (written atomically when the job ends)
    OUT/grades/ID.json           one grade per job, by the manifest's grader
    OUT/grades-SLUG/ID.json      grades by another grader (`grade_directory(out, grader)`)
    OUT/summary.json, summary.md, report.html

A job is one (organism, agent, run index) combination; its id `ORGANISM__AGENT__rN` names its
files. Everything here is plain file handling; nothing runs an agent or a grader.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from diffscope.bench.config import (
    COMPARED_KEYS,
    FORMAT_VERSION,
    BenchConfig,
    Manifest,
    normalize_grader,
)
from diffscope.paths import write_json

MANIFEST = "manifest.json"
RUNS = "runs"
GRADES = "grades"
LOCK = ".lock"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
REPORT_HTML = "report.html"

try:  # POSIX advisory locks; the kernel drops them when the holder dies, even by SIGKILL
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Job:
    """One investigation of a benchmark: an organism, an agent and a run index (from 1)."""

    organism: str
    agent: str
    run: int

    @property
    def id(self) -> str:
        """The job's deterministic id, which names its log and grade files."""
        return f"{self.organism}__{self.agent}__r{self.run}"


def plan_jobs(organisms: Sequence[str], agents: Sequence[str], runs: int) -> list[Job]:
    """Every combination, organism-major, then agent, then run index."""
    return [Job(o, a, r) for o in organisms for a in agents for r in range(1, runs + 1)]


def grader_slug(name: str) -> str:
    """A folder-safe form of a grader name, e.g. "openai/gpt-5" -> "openai-gpt-5"."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip("-.").lower()
    return slug or "grader"


def runs_dir(out: Path) -> Path:
    """The folder of run logs."""
    return Path(out) / RUNS


def log_path(out: Path, job: Job) -> Path:
    """Where a job's run log lives."""
    return runs_dir(out) / f"{job.id}.json"


def grades_dir(out: Path, grader: str, manifest_grader: str) -> Path:
    """`grades/` for the manifest's grader, `grades-SLUG/` for any other."""
    grader, manifest_grader = normalize_grader(grader), normalize_grader(manifest_grader)
    if grader == manifest_grader:
        return Path(out) / GRADES
    return Path(out) / f"{GRADES}-{grader_slug(grader)}"


def grade_path(folder: Path, job: Job) -> Path:
    """Where a job's grade lives inside a grades folder."""
    return Path(folder) / f"{job.id}.json"


def now_iso() -> str:
    """The current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- the manifest ---------------------------------------------------------------------------


def read_manifest(out: Path) -> Manifest:
    """The manifest of a benchmark folder; ValueError when there is none or it is unreadable."""
    path = Path(out) / MANIFEST
    if not path.exists():
        raise ValueError(f"{out} is not a benchmark folder (it has no {MANIFEST})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} cannot be read: {exc}") from exc
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: benchmark format_version {version!r} is not supported "
            f"(this diffscope reads version {FORMAT_VERSION}); use a new --out folder"
        )
    if not isinstance(data.get("config"), dict):
        raise ValueError(f"{path} has no 'config' section; use a new --out folder")
    config = {**data.get("options", {}), **data["config"]}  # older manifests kept options apart
    try:
        return Manifest.model_validate({**data, "config": config})
    except ValidationError as exc:
        raise ValueError(f"{path} has an invalid config; use a new --out folder ({exc})") from exc


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two configs, over the keys that define a benchmark."""
    problems = []
    for key in COMPARED_KEYS:
        before, after = old.get(key), new.get(key)
        if key in ("organisms", "agents") and isinstance(before, list) and isinstance(after, list):
            same = sorted(before) == sorted(after)
        else:
            same = before == after
        if not same:
            problems.append(f"{key}: the folder has {before!r}, this call asks for {after!r}")
    return problems


def open_manifest(out: Path, config: BenchConfig) -> Manifest:
    """Create the manifest of a new benchmark, or check that a resume uses the same config.

    Raises ValueError for a folder made with other settings, or one holding runs without a
    manifest. On a resume the stored settings that define the benchmark are kept (their order
    too) and the others (parallelism, transport, organism checks) are updated to this call's.
    Returns the manifest in effect.
    """
    out = Path(out)
    path = out / MANIFEST
    if path.exists():
        manifest = read_manifest(out)
        problems = config_differences(manifest.config.defining(), config.defining())
        if problems:
            raise ValueError(
                f"{out} holds a benchmark made with different settings ("
                + "; ".join(problems)
                + "). Use a new --out folder, or resume with the same settings"
                " (to score with another grader, use `diffscope grade` on the folder)"
            )
        kept = {key: getattr(manifest.config, key) for key in COMPARED_KEYS}
        updated = manifest.model_copy(update={"config": config.model_copy(update=kept)})
        if updated != manifest:
            write_json(path, updated.model_dump(mode="json"))
        return updated
    if runs_dir(out).is_dir() and any(runs_dir(out).glob("*.json")):
        raise ValueError(
            f"{out} holds run logs but no {MANIFEST}; use a new --out folder for the benchmark"
        )
    manifest = Manifest(created_at=now_iso(), config=config)
    write_json(path, manifest.model_dump(mode="json"))
    return manifest


def manifest_jobs(manifest: Manifest) -> list[Job]:
    """The jobs a manifest's config defines."""
    config = manifest.config
    return plan_jobs(config.organisms, config.agents, config.runs)


# --- housekeeping ---------------------------------------------------------------------------


def clean_temp_files(out: Path) -> list[Path]:
    """Delete the temp files an interrupted atomic write left behind (`.NAME.<random>.tmp`)."""
    out = Path(out)
    removed = []
    folders = [out, *(p for p in out.iterdir() if p.is_dir())] if out.is_dir() else []
    for folder in folders:
        for tmp in folder.glob(".*.tmp"):
            if tmp.is_file():
                tmp.unlink(missing_ok=True)
                removed.append(tmp)
    return removed


@contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold the folder's lock for the block; ValueError if another process holds it."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - not POSIX: no lock, as before
        yield
        return
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ValueError(
                f"another diffscope process is working in {out}; wait for it to finish "
                "or use a new --out folder"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
