"""Resuming a benchmark whose run logs were damaged: a log cut short mid-line or garbled is set
aside, its job runs again, and the summary counts the new run instead of the old grade."""

from __future__ import annotations

import json
from pathlib import Path

from benchfakes import Factory, run_bench

from diffscope.agent.log import load_run_log

ORGS = ["alpha", "beta"]
AGENTS = ["blackbox", "method"]


def test_a_truncated_or_garbled_log_is_run_again(fake_organisms: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    first = run_bench(
        ORGS,
        AGENTS,
        "scripted",
        out=out,
        provider_factory=Factory(fail={"alpha__method__r1": "factory"}),
        progress=False,
    )
    assert (first.errors, first.scored) == (1, 3)
    runs = out / "runs"
    truncated, garbled = runs / "alpha__method__r1.json", runs / "beta__method__r1.json"
    kept = {p.name: p.read_bytes() for p in runs.glob("*.json") if p not in (truncated, garbled)}
    whole = truncated.read_bytes()
    cut = whole.index(b'"status"') + 5  # mid-line, inside a key
    truncated.write_bytes(whole[:cut])
    garbled.write_bytes(b"\x00\xff" * 40)

    factory = Factory()
    summary = run_bench(ORGS, AGENTS, "scripted", out=out, provider_factory=factory, progress=False)

    assert sorted(factory.started) == ["alpha__method__r1", "beta__method__r1"]
    assert {p.name: p.read_bytes() for p in runs.glob("*.json") if p.name in kept} == kept
    for path, old in ((truncated, whole[:cut]), (garbled, b"\x00\xff" * 40)):
        log = load_run_log(path)
        assert log.status == "ok"
        grade = json.loads((out / "grades" / path.name).read_text())
        assert grade["run_id"] == log.run_id and grade["grade"]["score"] == 5.0
        (aside,) = runs.glob(f"{path.name}.unreadable-*")
        assert aside.read_bytes() == old
    assert (summary.errors, summary.unscored, summary.scored, summary.missing) == (0, 0, 4, 0)
    assert summary.complete
    assert summary.cell("alpha", "method").scores == [5.0]

    again = Factory()
    run_bench(ORGS, AGENTS, "scripted", out=out, provider_factory=again, progress=False)
    assert again.started == []


def test_a_log_that_is_json_but_not_a_run_log_is_run_again(
    fake_organisms: Path, tmp_path: Path
) -> None:
    out = tmp_path / "bench"
    run_bench(
        ["alpha"], ["method"], "scripted", out=out, provider_factory=Factory(), progress=False
    )
    log_file = out / "runs" / "alpha__method__r1.json"
    log_file.write_text(json.dumps({"format_version": 1, "status": "maybe"}))
    factory = Factory()
    summary = run_bench(
        ["alpha"], ["method"], "scripted", out=out, provider_factory=factory, progress=False
    )
    assert factory.started == ["alpha__method__r1"]
    assert load_run_log(log_file).status == "ok"
    assert (summary.errors, summary.scored) == (0, 1)
