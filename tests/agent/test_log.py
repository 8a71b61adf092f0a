"""The versioned run log: save and load, version check, and per-run event capture."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anyio
import pytest

from diffscope.agent.log import (
    FORMAT_VERSION,
    FinalAnswer,
    RunLog,
    ToolCallRecord,
    capture_events,
    load_run_log,
)


def test_round_trip_and_atomic_write(tmp_path: Path) -> None:
    log = RunLog(organism="fake", agent="method", provider="scripted")
    log.tool_calls.append(ToolCallRecord(id="c1", name="add", turn=1, kind="server", ms=1.5))
    log.final = FinalAnswer(hypothesis={"description": "x"}, submitted_by="forced")
    target = tmp_path / "logs" / "run.json"
    assert log.save(target) == target
    assert load_run_log(target) == log
    data = json.loads(target.read_text())
    assert data["format_version"] == FORMAT_VERSION == 1
    assert list(data)[:3] == ["format_version", "run_id", "started_at"]
    assert [p.name for p in target.parent.iterdir()] == ["run.json"]  # no temp file left
    assert RunLog().run_id != RunLog().run_id


def test_unknown_version_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "run.json"
    target.write_text(json.dumps({"format_version": 2}))
    with pytest.raises(ValueError, match="format_version 2 is not supported"):
        load_run_log(target)


def test_events_stay_with_their_own_run() -> None:
    logger = logging.getLogger("diffscope.llm.retry")
    first, second = RunLog(), RunLog()

    async def run(log: RunLog, name: str) -> None:
        with capture_events(log):
            for _ in range(3):
                logger.warning("retry in %s", name)
                await anyio.sleep(0.001)

    async def main() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(run, first, "first")
            group.start_soon(run, second, "second")

    anyio.run(main)
    logger.warning("after the runs")
    assert [e.message for e in first.events] == ["retry in first"] * 3
    assert [e.message for e in second.events] == ["retry in second"] * 3
    assert first.events[0].level == "warning"
