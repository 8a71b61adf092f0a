"""A benchmark killed with SIGKILL at an arbitrary moment resumes with every job done exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from benchfakes import Factory, run_bench
from kill_target import AGENTS, ORGS, RUNS

from diffscope.agent.log import load_run_log
from diffscope.bench import plan_jobs

TARGET = Path(__file__).resolve().parent / "kill_target.py"
WAIT_S = 120.0


def finished_logs(out: Path) -> dict[str, str]:
    return {p.stem: load_run_log(p).run_id for p in (out / "runs").glob("*.json")}


@pytest.mark.parametrize("parallel", [1, 3])
def test_sigkill_then_resume_runs_every_job_exactly_once(
    fake_organisms: Path, tmp_path: Path, parallel: int
) -> None:
    out, side = tmp_path / "bench", tmp_path / "started.txt"
    ids = {job.id for job in plan_jobs(ORGS, AGENTS, RUNS)}
    env = {**os.environ, "DIFFSCOPE_ORGANISMS": str(fake_organisms)}
    proc = subprocess.Popen(
        [sys.executable, str(TARGET), str(out), str(side), str(parallel)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + WAIT_S
        while len(list((out / "runs").glob("*.json"))) < 2:
            if proc.poll() is not None:
                pytest.fail(f"the benchmark exited early: {proc.stderr.read().decode()[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the benchmark wrote no logs in time")
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    before = finished_logs(out)
    assert 2 <= len(before) < len(ids), "the kill must land in the middle of the benchmark"
    started_before = side.read_text().split()
    assert len(started_before) == len(set(started_before))

    factory = Factory(side)
    summary = run_bench(
        ORGS,
        AGENTS,
        "scripted",
        runs=RUNS,
        parallel=parallel,
        out=out,
        provider_factory=factory,
        progress=False,
    )

    # no job that had finished ran again; every other job ran once more, now to completion
    assert not set(factory.started) & set(before)
    assert sorted(factory.started) == sorted(ids - set(before))
    starts = side.read_text().split()
    assert set(starts) == ids
    assert all(starts.count(job) == 1 for job in before)
    assert len(starts) <= len(ids) + parallel  # only jobs in flight at the kill started twice

    after = finished_logs(out)
    assert set(after) == ids
    assert {job: after[job] for job in before} == before  # the finished logs are untouched
    grades = {p.stem: json.loads(p.read_text()) for p in (out / "grades").glob("*.json")}
    assert set(grades) == ids
    assert all(grades[job]["run_id"] == after[job] for job in ids)
    assert not list(out.rglob("*.tmp"))
    assert summary.complete and summary.jobs == len(ids) == summary.scored
