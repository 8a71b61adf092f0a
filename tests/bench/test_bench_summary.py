"""Benchmark tables: intervals, tables computed from the files alone, re-grading a folder."""

from __future__ import annotations

import gc
import json
import math
from fractions import Fraction
from pathlib import Path

import pytest
from benchfakes import Factory, run_bench
from scipy import stats

from diffscope.bench import failed_checks, grade_directory, summarise
from diffscope.bench.render import describe, fmt, markdown, terminal_table
from diffscope.bench.stats import diff_ci, mean_ci

ORGS = ["alpha", "beta"]
AGENTS = ["blackbox", "method"]


def test_mean_ci_is_t_based() -> None:
    estimate = mean_ci([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert estimate.mean == pytest.approx(2.0) and estimate.sd == pytest.approx(1.0)
    assert estimate.ci_low == pytest.approx(2.0 - half)
    assert estimate.ci_high == pytest.approx(2.0 + half)
    assert estimate.n == 3 and estimate.note == ""

    one = mean_ci([4.0])
    assert (one.mean, one.ci_low, one.ci_high, one.note) == (4.0, None, None, "n=1, no CI")
    none = mean_ci([])
    assert (none.mean, none.n, none.note) == (None, 0, "no scores")
    flat = mean_ci([3.0, 3.0])
    assert (flat.ci_low, flat.ci_high) == (3.0, 3.0)


def test_diff_ci_is_welch() -> None:
    a, b = [5.0, 4.0, 5.0, 3.0], [1.0, 2.0, 1.0]
    estimate = diff_ci(a, b)
    low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert estimate.mean == pytest.approx(sum(a) / 4 - sum(b) / 3)
    assert (estimate.ci_low, estimate.ci_high) == (pytest.approx(low), pytest.approx(high))

    assert diff_ci([5.0], [1.0, 2.0]).note == "n=1 on one side, no CI"
    assert diff_ci([5.0], [1.0, 2.0]).mean == pytest.approx(3.5)
    assert diff_ci([], [1.0]).mean is None
    same = diff_ci([2.0, 2.0], [1.0, 1.0])
    assert (same.mean, same.ci_low, same.ci_high) == (1.0, 1.0, 1.0)


def bench(tmp_path: Path, runs: int = 3) -> Path:
    out = tmp_path / "bench"
    run_bench(
        ORGS, AGENTS, "scripted", runs=runs, out=out, provider_factory=Factory(), progress=False
    )
    return out


def test_summary_is_computed_from_the_files_alone(fake_organisms: Path, tmp_path: Path) -> None:
    out = bench(tmp_path)
    gc.collect()

    # method names the key fact on runs 1 and 3 (score 5) but not on run 2 (score 1)
    summary = summarise(out, write=False)
    method = summary.cell("alpha", "method")
    assert method.scores == [5.0, 1.0, 5.0] and method.scored == 3 and method.unscored == 0
    expected = mean_ci([5.0, 1.0, 5.0])
    assert method.estimate.mean == pytest.approx(11 / 3)
    assert method.estimate.ci_high == pytest.approx(expected.ci_high)
    blackbox = summary.cell("alpha", "blackbox")
    assert blackbox.scores == [1.0, 1.0, 1.0]
    diff = next(d for d in summary.differences if d.organism == "alpha")
    assert (diff.agent, diff.baseline) == ("method", "blackbox")
    assert diff.estimate.mean == pytest.approx(8 / 3)
    (overall,) = summary.overall_differences
    assert overall.estimate.mean == pytest.approx(8 / 3) and overall.estimate.n == 2
    pooled = next(o for o in summary.overall if o.agent == "method")
    assert pooled.scored == 6 and pooled.estimate.mean == pytest.approx(22 / 6)

    # edit the files: the tables follow them, not any state of the run
    grade_file = out / "grades" / "alpha__method__r2.json"
    record = json.loads(grade_file.read_text())
    record["grade"] = {**record["grade"], "score": None, "scored": False, "reason": "no verdict"}
    grade_file.write_text(json.dumps(record))
    (out / "runs" / "beta__blackbox__r3.json").unlink()
    summary = summarise(out)
    method = summary.cell("alpha", "method")
    assert (method.scores, method.unscored) == ([5.0, 5.0], 1)
    assert summary.cell("beta", "blackbox").missing == 1
    assert (summary.missing, summary.unscored, summary.complete) == (1, 1, False)

    written = json.loads((out / "summary.json").read_text())
    assert written["missing"] == 1 and written["grader"] == "keyfacts"
    cell = next(c for c in written["cells"] if (c["organism"], c["agent"]) == ("alpha", "method"))
    assert cell["scores"] == [5.0, 5.0] and cell["unscored"] == 1
    table = (out / "summary.md").read_text()
    assert "| organism | blackbox | method | method - blackbox |" in table
    assert "1 unscored" in table and "1 missing" in table
    assert "[alpha__method__r1](runs/alpha__method__r1.json)" in table
    report = (out / "report.html").read_text()
    assert 'src="data:image/png;base64,' in report
    assert 'href="runs/alpha__method__r1.json"' in report
    assert "<style>" in report and "<script" not in report
    assert "all about pirate" in report  # the per-run hypothesis detail


def test_one_run_says_there_is_no_ci(fake_organisms: Path, tmp_path: Path) -> None:
    out = bench(tmp_path, runs=1)
    summary = summarise(out, write=False)
    assert summary.cell("alpha", "method").estimate.note == "n=1, no CI"
    text = markdown(summary)
    assert "5.00 (n=1, no CI)" in text
    assert "+4.00 (n=1 on both sides, no CI)" in text
    assert "one side" not in text


def test_differences_are_exact_and_rounded_once() -> None:
    # 7/3 and 11/3 show as 2.33 and 3.67, but their difference is -4/3: -1.33, not -1.34
    method, blackbox = mean_ci([1.0, 3.0, 3.0]), mean_ci([3.0, 3.0, 5.0])
    assert (method.exact, blackbox.exact) == ("7/3", "11/3")
    assert (describe(method)[:4], describe(blackbox)[:4]) == ("2.33", "3.67")
    diff = diff_ci([1.0, 3.0, 3.0], [3.0, 3.0, 5.0])
    assert diff.fraction == Fraction(-4, 3)
    assert describe(diff, signed=True).startswith("-1.33 ")
    assert fmt(Fraction(2675, 1000)) == "2.68"  # the float 2.675 would print 2.67
    assert fmt(Fraction(-1, 200), signed=True) == "-0.01" and fmt(Fraction(0), True) == "+0.00"
    assert mean_ci([0.1, 0.2]).exact == "3/20"  # decimals as written, not their binary floats
    one = diff_ci([5.0], [1.0])
    assert (one.mean, one.note) == (4.0, "n=1 on both sides, no CI")
    assert diff_ci([5.0], [1.0, 2.0]).note == "n=1 on one side, no CI"
    assert diff_ci([], [1.0]).note == "no scores on one side"
    assert diff_ci([], []).note == "no scores on either side"


def test_a_failed_check_is_marked_and_left_out_of_the_averages(
    fake_organisms: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    checks = {"alpha": (True, "ok"), "beta": (False, "the cats fact was not learned")}
    run_bench(
        ORGS,
        AGENTS,
        "scripted",
        runs=1,
        out=out,
        provider_factory=Factory(),
        failed_checks=failed_checks(checks),
    )
    summary = summarise(out)
    assert summary.excluded == {"beta": "the cats fact was not learned"}
    assert summary.cell("beta", "method").scores == [5.0]  # still run and graded
    (overall,) = summary.overall_differences
    assert overall.estimate.n == 1 and overall.estimate.mean == pytest.approx(4.0)
    pooled = next(o for o in summary.overall if o.agent == "method")
    assert pooled.scored == 1 and pooled.organisms == 1
    table = (out / "summary.md").read_text()
    assert "beta (check failed, not averaged)" in table
    assert "the cats fact was not learned" in table and "left out" in table
    assert "the cats fact was not learned" in (out / "report.html").read_text()

    forced = run_bench(
        ORGS,
        AGENTS,
        "scripted",
        runs=1,
        out=out,
        provider_factory=Factory(),
        failed_checks=failed_checks(checks),
        include_failed=True,
    )
    assert forced.excluded == {} and forced.overall_differences[0].estimate.n == 2
    assert "beta (check failed, included)" in (out / "summary.md").read_text()


def test_the_terminal_gets_a_rich_table(fake_organisms: Path, tmp_path: Path) -> None:
    from rich.console import Console

    summary = summarise(bench(tmp_path, runs=1), write=False)
    console = Console(record=True, width=200)
    console.print(terminal_table(summary))
    text = console.export_text()
    assert "method - blackbox" in text and "overall" in text and "|" not in text


def test_grade_directory_regrades_without_running_agents(
    fake_organisms: Path, tmp_path: Path
) -> None:
    out = bench(tmp_path, runs=1)
    runs_before = {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")}
    grade_file = out / "grades" / "alpha__method__r1.json"
    record = json.loads(grade_file.read_text())
    record["grade"] = {**record["grade"], "score": 2.0, "reason": "tampered"}
    grade_file.write_text(json.dumps(record))
    assert summarise(out, write=False).cell("alpha", "method").scores == [2.0]

    summary = grade_directory(out, progress=False)
    assert json.loads(grade_file.read_text())["grade"]["score"] == 5.0
    assert summary.cell("alpha", "method").scores == [5.0]
    assert summary.grades_dir == "grades"

    other = grade_directory(out, "keyfacts-only", progress=False)
    assert other.grader == "keyfacts-only" and other.grades_dir == "grades-keyfacts-only"
    assert {p.stem for p in (out / "grades-keyfacts-only").glob("*.json")} == {
        p.stem for p in (out / "runs").glob("*.json")
    }
    assert json.loads((out / "summary.json").read_text())["grades_dir"] == "grades-keyfacts-only"
    assert other.complete
    assert {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")} == runs_before

    with pytest.raises(ValueError, match="not a benchmark folder"):
        grade_directory(tmp_path / "elsewhere", progress=False)
    with pytest.raises(ValueError, match="cannot use grader"):
        grade_directory(out, "nope/x", progress=False)


def test_group_rows_split_trained_organisms_from_perturbations(
    fake_organisms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = bench(tmp_path)
    summary = summarise(out, write=False)
    (trained,) = [g for g in summary.groups if g.agent == "method"]
    assert (trained.group, trained.organisms) == ("trained", 2)
    assert trained.difference is not None and trained.difference.mean == pytest.approx(8 / 3)
    assert trained.estimate.mean == pytest.approx(22 / 6)

    import diffscope.bench.summary as summary_module

    monkeypatch.setattr(
        summary_module,
        "organism_group",
        lambda name: "perturbation" if name == "alpha" else "trained",
    )
    split = summarise(out, write=False)
    groups = {(g.group, g.agent): g for g in split.groups}
    assert groups["perturbation", "method"].organisms == 1
    assert groups["trained", "blackbox"].estimate.mean == pytest.approx(1.0)
    assert groups["trained", "blackbox"].difference is None
    table = markdown(split)
    assert "| trained (1) |" in table and "| perturbation (1) |" in table
