"""The benchmark runner over the real agent loop with scripted investigators and fake organisms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchfakes import Factory, run_bench

from diffscope.agent.log import load_run_log
from diffscope.agent.loop import AgentBudget
from diffscope.bench import BenchConfig, plan_jobs
from diffscope.bench.layout import folder_lock

ORGS = ["alpha", "beta"]
AGENTS = ["blackbox", "method"]


def ids(runs: int = 1) -> set[str]:
    return {job.id for job in plan_jobs(ORGS, AGENTS, runs)}


def names(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.json")}


def test_every_combination_gets_one_log_and_one_grade(fake_organisms: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    factory = Factory()
    budget = AgentBudget(max_tool_calls=3)
    summary = run_bench(
        ORGS,
        AGENTS,
        "scripted",
        runs=2,
        out=out,
        budget=budget,
        provider_factory=factory,
        progress=False,
    )

    assert sorted(factory.started) == sorted(ids(2))
    assert names(out / "runs") == ids(2) == names(out / "grades")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"] == {
        "organisms": ORGS,
        "agents": AGENTS,
        "model": "scripted",
        "grader": "keyfacts",
        "runs": 2,
        "budget": budget.model_dump(),
        "parallel": 1,
        "transport": "inprocess",
        "base_url": None,
        "include_failed": False,
        "failed_checks": {},
    }
    assert BenchConfig.model_validate(manifest["config"]).budget == budget
    assert manifest["format_version"] == 1 and manifest["diffscope_version"]
    log = load_run_log(out / "runs" / "alpha__method__r1.json")
    assert (log.organism, log.agent, log.status) == ("alpha", "method", "ok")
    assert log.budget["max_tool_calls"] == 3
    grade = json.loads((out / "grades" / "alpha__method__r1.json").read_text())
    assert grade["run_id"] == log.run_id and grade["grade"]["score"] == 5.0
    assert (summary.jobs, summary.logged, summary.scored, summary.missing) == (8, 8, 8, 0)
    assert summary.complete
    assert summary.cell("alpha", "method").scores == [5.0, 1.0]
    assert summary.cell("beta", "blackbox").scores == [1.0, 1.0]
    for name in ("summary.json", "summary.md", "report.html"):
        assert (out / name).stat().st_size > 0
    assert not list(out.rglob("*.tmp"))


def test_resume_runs_only_what_is_missing(fake_organisms: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    run_bench(ORGS, AGENTS, "scripted", out=out, provider_factory=Factory(), progress=False)
    before = {p.stem: load_run_log(p).run_id for p in (out / "runs").glob("*.json")}

    (out / "runs" / "beta__method__r1.json").unlink()  # the job never finished
    (out / "grades" / "beta__method__r1.json").unlink()
    (out / "grades" / "alpha__blackbox__r1.json").unlink()  # killed between log and grade
    stale = out / "grades" / "alpha__method__r1.json"  # a grade of an older log
    record = json.loads(stale.read_text())
    stale.write_text(json.dumps({**record, "run_id": "older", "grade": {**record["grade"]}}))
    for folder in ("runs", "grades", "."):  # temp files of atomic writes cut short
        (out / folder / ".x.json.abc123.tmp").write_text("{partial")

    factory = Factory()
    summary = run_bench(ORGS, AGENTS, "scripted", out=out, provider_factory=factory, progress=False)

    assert factory.started == ["beta__method__r1"]
    after = {p.stem: load_run_log(p).run_id for p in (out / "runs").glob("*.json")}
    assert {k: v for k, v in after.items() if k != "beta__method__r1"} == {
        k: v for k, v in before.items() if k != "beta__method__r1"
    }
    assert names(out / "grades") == ids()
    assert json.loads(stale.read_text())["run_id"] == after["alpha__method__r1"]
    assert not list(out.rglob("*.tmp"))
    assert summary.complete and summary.scored == 4


def test_a_complete_benchmark_resumes_without_running_anything(
    fake_organisms: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    run_bench(
        ["alpha"], ["blackbox"], "scripted", out=out, provider_factory=Factory(), progress=False
    )
    factory = Factory()
    summary = run_bench(
        ["alpha"], ["blackbox"], "scripted", out=out, provider_factory=factory, progress=False
    )
    assert factory.started == [] and summary.complete


def test_failed_runs_are_logged_and_graded_or_unscored(
    fake_organisms: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    factory = Factory(fail={"alpha__method__r1": "factory", "beta__method__r1": "provider"})
    summary = run_bench(ORGS, AGENTS, "scripted", out=out, provider_factory=factory, progress=False)

    broken = load_run_log(out / "runs" / "alpha__method__r1.json")
    assert broken.status == "error" and "cannot build an investigator" in broken.error
    grade = json.loads((out / "grades" / "alpha__method__r1.json").read_text())["grade"]
    assert grade["scored"] is False and grade["score"] is None
    assert "cannot build an investigator" in grade["reason"]

    failed = load_run_log(out / "runs" / "beta__method__r1.json")
    assert failed.status == "error" and "went away" in failed.error
    assert failed.final.submitted_by == "fallback"
    grade = json.loads((out / "grades" / "beta__method__r1.json").read_text())["grade"]
    assert grade["scored"] is True and grade["score"] == 5.0  # the recorded hypothesis counts
    assert grade["details"]["run_status"] == "error"

    assert (summary.errors, summary.unscored, summary.scored) == (2, 1, 3)
    cell = summary.cell("alpha", "method")
    assert (cell.scored, cell.unscored, cell.errors) == (0, 1, 1)
    assert cell.estimate.note == "no scores"


def test_parallel_jobs_each_run_once(fake_organisms: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    factory = Factory(sleep_s=0.05)
    summary = run_bench(
        ORGS,
        AGENTS,
        "scripted",
        runs=3,
        parallel=4,
        out=out,
        provider_factory=factory,
        progress=True,
    )
    assert sorted(factory.started) == sorted(ids(3))
    assert names(out / "runs") == ids(3) == names(out / "grades")
    assert summary.complete and summary.scored == 12


def test_a_different_config_is_refused(fake_organisms: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    run_bench(
        ["alpha"], ["blackbox"], "scripted", out=out, provider_factory=Factory(), progress=False
    )
    changes = [
        {"runs": 2},
        {"grader": "keyfacts-only"},
        {"budget": AgentBudget(max_tool_calls=1)},
        {"organisms": ["alpha", "beta"]},
    ]
    for change in changes:
        kwargs = {"organisms": ["alpha"], "agents": ["blackbox"], "model": "scripted", **change}
        factory = Factory()
        with pytest.raises(ValueError, match="different settings") as info:
            run_bench(out=out, provider_factory=factory, progress=False, **kwargs)
        assert "new --out" in str(info.value) and "same settings" in str(info.value)
        assert factory.started == []
    with pytest.raises(ValueError, match="model"):
        run_bench(
            ["alpha"], ["blackbox"], "other", out=out, provider_factory=Factory(), progress=False
        )
    # the grader's aliases name the same grader, so this is the same benchmark
    run_bench(
        ["alpha"],
        ["blackbox"],
        "scripted",
        grader="offline",
        out=out,
        provider_factory=Factory(),
        progress=False,
    )

    stray = tmp_path / "stray"
    (stray / "runs").mkdir(parents=True)
    (stray / "runs" / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="no manifest.json"):
        run_bench(
            ["alpha"],
            ["blackbox"],
            "scripted",
            out=stray,
            provider_factory=Factory(),
            progress=False,
        )


def test_user_mistakes_are_value_errors(fake_organisms: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    cases = [
        ({"organisms": ["nope"]}, "unknown organism"),
        ({"organisms": []}, "at least one organism"),
        ({"agents": ["no-such-profile"]}, "unknown agent"),
        ({"agents": ["../evil"]}, "not a valid name"),
        ({"runs": 0}, "runs"),
        ({"parallel": 0}, "parallel"),
        ({"grader": "nope/x"}, "grader"),
    ]
    for change, message in cases:
        kwargs = {"organisms": ["alpha"], "agents": ["blackbox"], "model": "scripted", **change}
        with pytest.raises(ValueError, match=message):
            run_bench(out=out, provider_factory=Factory(), progress=False, **kwargs)
    with pytest.raises(ValueError, match="cannot use model"):
        run_bench(["alpha"], ["blackbox"], "nope/x", out=out, progress=False)
    assert not (out / "runs").exists()


def test_a_folder_in_use_is_refused(fake_organisms: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    with folder_lock(out), pytest.raises(ValueError, match="another diffscope process"):
        run_bench(
            ["alpha"], ["blackbox"], "scripted", out=out, provider_factory=Factory(), progress=False
        )
    run_bench(
        ["alpha"], ["blackbox"], "scripted", out=out, provider_factory=Factory(), progress=False
    )


def test_every_file_of_a_benchmark_follows_the_umask(fake_organisms: Path, tmp_path: Path) -> None:
    import os

    out = tmp_path / "bench"
    old = os.umask(0o022)
    try:
        run_bench(["alpha"], AGENTS, "scripted", out=out, provider_factory=Factory())
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"manifest.json", "summary.md", "report.html", "alpha__method__r1.json"} <= {
        p.name for p in files
    }
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {
        p.name: "0o644" for p in files
    }
