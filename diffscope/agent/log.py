"""The versioned JSON log of one investigation: everything the run did, in one file.

A `RunLog` holds the run id and timestamps, the organism's name (never its ground truth), the
agent kind and profile, the provider and model, the budget and what was spent, every message
(with the model's latency or the tool's duration in ms), every tool call (kind, error flag,
duration), the provider's retries (rate limits, overloads) as events, each recorded hypothesis,
the final hypothesis with who submitted it, the status ("ok" | "budget" | "error") and the reason
a run stopped early. `save` writes it atomically; `load_run_log` reads one back and checks its
format version.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from diffscope.llm import Usage
from diffscope.paths import write_json

FORMAT_VERSION = 1

Status = Literal["ok", "budget", "error"]
SubmittedBy = Literal["model", "forced", "fallback"]
CallKind = Literal["server", "local", "unknown", "malformed", "skipped"]


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a random suffix."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def now_iso() -> str:
    """The current UTC time in ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class MessageRecord(BaseModel):
    """One message of the conversation.

    `ms` is the provider's latency for an assistant message and the tool's duration for a tool
    message; `at_s` is seconds since the run started.
    """

    index: int
    role: str
    content: str = ""
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False
    at_s: float = 0.0
    ms: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    stop_reason: str | None = None


class ToolCallRecord(BaseModel):
    """One tool call the model made and how it went.

    `kind`: "server" (sent to the MCP server), "local" (record_hypothesis / submit_answer),
    "unknown" (no such tool), "malformed" (arguments were not a JSON object) or "skipped"
    (not run because the run was already ending).
    """

    id: str
    name: str
    turn: int
    kind: CallKind
    arguments: dict[str, Any] = Field(default_factory=dict)
    raw_arguments: str = ""
    parse_error: str | None = None
    is_error: bool = False
    ms: float = 0.0
    at_s: float = 0.0
    result_chars: int = 0
    images: int = 0


class EventRecord(BaseModel):
    """Something that happened outside the conversation, e.g. a provider retry after a 429."""

    at_s: float
    level: str
    source: str
    message: str


class HypothesisRecord(BaseModel):
    """A hypothesis the model recorded (or submitted) and when."""

    turn: int
    at_s: float
    tool: str
    hypothesis: dict[str, Any]


class RunUsage(Usage):
    """What the run spent: provider tokens (`Usage`), turns, tool calls, wall time, the server's count."""

    turns: int = 0
    tool_calls: int = 0
    local_calls: int = 0
    rejected_calls: int = 0
    wall_s: float = 0.0
    server: dict[str, Any] | None = None


class FinalAnswer(BaseModel):
    """The hypothesis the run ended with and who submitted it."""

    hypothesis: dict[str, Any]
    submitted_by: SubmittedBy


class RunLog(BaseModel):
    """Everything one investigation did (format version 1)."""

    format_version: int = FORMAT_VERSION
    run_id: str = Field(default_factory=new_run_id)
    started_at: str = Field(default_factory=now_iso)
    ended_at: str | None = None
    organism: str | None = None
    agent: str | None = None
    profile: str | None = None
    transport: str | None = None
    provider: str = ""
    model: str = ""
    budget: dict[str, Any] = Field(default_factory=dict)
    usage: RunUsage = Field(default_factory=RunUsage)
    tools: list[str] = Field(default_factory=list)
    messages: list[MessageRecord] = Field(default_factory=list)
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    hypotheses: list[HypothesisRecord] = Field(default_factory=list)
    events: list[EventRecord] = Field(default_factory=list)
    final: FinalAnswer | None = None
    status: Status = "ok"
    stop_reason: str | None = None
    error: str | None = None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the log as JSON atomically (temp file + rename)."""
        return write_json(path, self.model_dump(mode="json"))


def load_run_log(path: str | os.PathLike[str]) -> RunLog:
    """Read a run log, refusing a format version this code does not know."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: run log format_version {version!r} is not supported "
            f"(this diffscope reads version {FORMAT_VERSION})"
        )
    return RunLog.model_validate(data)


EVENT_LOGGER = "diffscope.llm"
_current: contextvars.ContextVar[RunLog | None] = contextvars.ContextVar(
    "diffscope_run_log", default=None
)


class _EventHandler(logging.Handler):
    """Copies provider warnings (retries) into the log of the run whose task emitted them."""

    def __init__(self, log: RunLog, start: float) -> None:
        super().__init__(logging.WARNING)
        self.log = log
        self.start = start

    def emit(self, record: logging.LogRecord) -> None:
        if _current.get() is not self.log:
            return
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break the run
            message = str(record.msg)
        self.log.events.append(
            EventRecord(
                at_s=round(time.monotonic() - self.start, 3),
                level=record.levelname.lower(),
                source=record.name,
                message=message,
            )
        )


@contextmanager
def capture_events(log: RunLog, start: float | None = None) -> Iterator[None]:
    """Record the provider layer's warnings (retries) in `log` while the block runs.

    Only records emitted from this context (the run's own task) are kept, so concurrent runs in
    one process do not mix their events. `start` is the run's `time.monotonic()` origin.
    """
    handler = _EventHandler(log, time.monotonic() if start is None else start)
    logger = logging.getLogger(EVENT_LOGGER)
    token = _current.set(log)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        _current.reset(token)
