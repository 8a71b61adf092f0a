"""The investigator's tool loop: a provider talks to a diffscope MCP server until it submits.

`investigate(provider, session, budget=...)` sends the system and task prompts with the server's
tools plus two local ones, `record_hypothesis` (keep a best-so-far hypothesis) and
`submit_answer` (the final one), and runs every tool call the model makes, in order. Tool errors,
unknown tools, malformed arguments and invalid hypotheses go back to the model as error results;
they never end the run. The run ends when `submit_answer` gets valid arguments, or when a budget
(tool calls, model queries as the server counts them, provider tokens, wall time, turns) is spent:
then the model is asked once more with only `submit_answer`, and if it still does not submit, the
last recorded hypothesis (or one built from its last words) is used. A provider failure ends the
run with status "error"; the result and the log are produced all the same.

Opening the server and writing the log of a whole run is `diffscope.agent.run`; the loop only
ever sees an open tool session, never the pair or its ground truth.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import anyio

from diffscope.agent import prompts
from diffscope.agent.answers import (
    RECORD_SPEC,
    RECORD_TOOL,
    SUBMIT_SPEC,
    SUBMIT_TOOL,
    InvestigationResult,
    clip,
    fallback_hypothesis,
    parse_hypothesis,
)
from diffscope.agent.budget import AgentBudget
from diffscope.agent.log import (
    CallKind,
    FinalAnswer,
    HypothesisRecord,
    MessageRecord,
    RunLog,
    Status,
    SubmittedBy,
    ToolCallRecord,
    capture_events,
    now_iso,
)
from diffscope.agent.session import ToolSource
from diffscope.llm import Completion, Hypothesis, Message, Provider, ToolCall, ToolSpec

__all__ = ["AgentBudget", "InvestigationResult", "failed_result", "investigate"]

SERVER_USAGE_TIMEOUT_S = 10.0


class _Stop(Exception):
    """Internal: the main loop ends because a budget (or the model's silence) says so."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _Run:
    """The state of one investigation; `investigate` drives it."""

    def __init__(
        self, provider: Provider, session: ToolSource, budget: AgentBudget, log: RunLog
    ) -> None:
        self.provider = provider
        self.session = session
        self.budget = budget
        self.log = log
        self.start = time.monotonic()
        self.messages: list[Message] = []
        self.server_tools: set[str] = set()
        self.turn = 0
        self.last_text = ""
        self.recorded: Hypothesis | None = None
        self.final: Hypothesis | None = None
        self.submitted_by: SubmittedBy | None = None
        self.status: Status = "ok"
        self.stop_reason: str | None = None
        self.error: str | None = None

    # bookkeeping

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def remaining_s(self) -> float | None:
        if self.budget.max_wall_s is None:
            return None
        return max(self.budget.max_wall_s - self.elapsed(), 0.0)

    def add(
        self,
        message: Message,
        *,
        ms: float | None = None,
        completion: Completion | None = None,
    ) -> None:
        self.messages.append(message)
        record = MessageRecord(
            index=len(self.log.messages),
            role=message.role,
            content=message.content,
            tool_calls=[call.model_dump(mode="json") for call in message.tool_calls],
            tool_call_id=message.tool_call_id,
            name=message.name,
            is_error=message.is_error,
            at_s=round(self.elapsed(), 3),
            ms=None if ms is None else round(ms, 1),
        )
        if completion is not None:
            record.input_tokens = completion.usage.input_tokens
            record.output_tokens = completion.usage.output_tokens
            record.stop_reason = completion.stop_reason
        self.log.messages.append(record)

    def answer(
        self,
        call: ToolCall,
        text: str,
        *,
        kind: CallKind,
        is_error: bool,
        ms: float = 0.0,
        images: int = 0,
    ) -> None:
        """Append the tool message answering `call` and its log record."""
        self.add(Message.tool(call.id, text, name=call.name, is_error=is_error), ms=ms)
        self.log.tool_calls.append(
            ToolCallRecord(
                id=call.id,
                name=call.name,
                turn=self.turn,
                kind=kind,
                arguments=call.arguments,
                raw_arguments=call.raw_arguments,
                parse_error=call.parse_error,
                is_error=is_error,
                ms=round(ms, 1),
                at_s=round(self.elapsed(), 3),
                result_chars=len(text),
                images=images,
            )
        )
        usage = self.log.usage
        if kind == "server":
            usage.tool_calls += 1
        elif kind == "local":
            usage.local_calls += 1
        elif kind in ("unknown", "malformed"):
            usage.rejected_calls += 1

    async def exhausted(self) -> _Stop | None:
        """The first spent budget, if any (the server is asked for its model-query count)."""
        budget, usage = self.budget, self.log.usage
        if budget.max_wall_s is not None and self.elapsed() >= budget.max_wall_s:
            return _Stop("wall_time", f"the time budget ({budget.max_wall_s:g} s) is spent")
        if budget.max_tool_calls is not None and usage.tool_calls >= budget.max_tool_calls:
            return _Stop("tool_calls", f"the tool-call budget ({budget.max_tool_calls}) is spent")
        if budget.max_tokens is not None and usage.total_tokens >= budget.max_tokens:
            return _Stop("tokens", f"the token budget ({budget.max_tokens}) is spent")
        if budget.max_turns is not None and self.turn >= budget.max_turns:
            return _Stop("turns", f"all {budget.max_turns} replies of the budget are used")
        if budget.max_model_queries is not None and usage.tool_calls:
            used = await self.server_queries()
            if used is not None and used >= budget.max_model_queries:
                return _Stop(
                    "model_queries",
                    f"the model-query budget ({budget.max_model_queries}) is spent",
                )
        return None

    async def server_queries(self) -> int | None:
        report = await self.session.budget()
        if not report:
            return None
        self.log.usage.server = report.get("used", report)
        value = (report.get("used") or {}).get("model_queries")
        return value if isinstance(value, int) else None

    # talking to the model

    async def ask(self, tools: list[ToolSpec], timeout: float | None) -> Completion | None:
        """One provider request; None when it ran past `timeout` seconds."""
        start = time.monotonic()
        completion: Completion | None = None
        with anyio.move_on_after(timeout):
            completion = await self.provider.complete(
                self.messages, tools, max_tokens=self.budget.reply_tokens
            )
        if completion is None:
            return None
        ms = (time.monotonic() - start) * 1000
        self.log.usage.input_tokens += completion.usage.input_tokens
        self.log.usage.output_tokens += completion.usage.output_tokens
        if completion.model:
            self.log.model = completion.model
        if completion.text.strip():
            self.last_text = completion.text
        self.add(completion.message(), ms=ms, completion=completion)
        return completion

    # running tool calls

    def take_hypothesis(self, call: ToolCall) -> Hypothesis | None:
        """Validate a local call; answer it with an error and return None when invalid."""
        try:
            hypothesis = parse_hypothesis(call.name, call.arguments)
        except ValueError as exc:
            self.answer(call, f"{exc}. Fix it and call again.", kind="local", is_error=True)
            return None
        self.log.hypotheses.append(
            HypothesisRecord(
                turn=self.turn,
                at_s=round(self.elapsed(), 3),
                tool=call.name,
                hypothesis=hypothesis.model_dump(mode="json"),
            )
        )
        return hypothesis

    async def run_call(self, call: ToolCall, allowed: set[str]) -> bool:
        """Run one call and answer it; True when it was a valid `submit_answer`."""
        if call.name not in allowed:
            names = ", ".join(sorted(allowed))
            self.answer(
                call,
                f"unknown tool {call.name!r}; available tools: {names}",
                kind="unknown",
                is_error=True,
            )
            return False
        if call.parse_error:
            self.answer(
                call,
                f"{call.parse_error}. Send the arguments as one JSON object matching the schema.",
                kind="malformed",
                is_error=True,
            )
            return False
        if call.name in (RECORD_TOOL, SUBMIT_TOOL):
            hypothesis = self.take_hypothesis(call)
            if hypothesis is None:
                return False
            if call.name == RECORD_TOOL:
                self.recorded = hypothesis
                self.answer(call, "recorded", kind="local", is_error=False)
                return False
            self.final = hypothesis
            self.answer(call, "submitted", kind="local", is_error=False)
            return True
        start = time.monotonic()
        result = None
        with anyio.move_on_after(self.remaining_s()):
            result = await self.session.call_tool(call.name, call.arguments)
        ms = (time.monotonic() - start) * 1000
        if result is None:
            self.answer(
                call,
                f"{call.name} did not finish before the time budget ran out",
                kind="server",
                is_error=True,
                ms=ms,
            )
            return False
        self.answer(
            call,
            clip(result.text, self.budget.max_result_chars),
            kind="server",
            is_error=result.is_error,
            ms=ms,
            images=result.images,
        )
        return False

    def skip(self, calls: Sequence[ToolCall], why: str) -> None:
        """Answer calls that will not run (every call needs an answer in the conversation)."""
        for call in calls:
            self.answer(call, f"not run: {why}", kind="skipped", is_error=True)

    # the phases

    async def main(
        self, system_prompt: str | None, task_prompt: str | None, kind: str | None
    ) -> None:
        specs = await self.session.list_tools()
        clash = {spec.name for spec in specs} & {RECORD_TOOL, SUBMIT_TOOL}
        if clash:
            raise ValueError(f"the server offers tools named like the local ones: {sorted(clash)}")
        self.server_tools = {spec.name for spec in specs}
        tools = [*specs, RECORD_SPEC, SUBMIT_SPEC]
        allowed = {spec.name for spec in tools}
        self.log.tools = [spec.name for spec in specs]
        budget_view = self.budget.model_dump()
        self.add(Message.system(system_prompt or prompts.system_prompt(specs, kind)))
        self.add(Message.user(task_prompt or prompts.task_prompt(budget_view)))
        nudges = 0
        while True:
            stop = await self.exhausted()
            if stop is not None:
                raise stop
            completion = await self.ask(tools, self.remaining_s())
            if completion is None:
                raise _Stop("wall_time", f"the time budget ({self.budget.max_wall_s:g} s) is spent")
            self.turn += 1
            if not completion.tool_calls:
                nudges += 1
                if nudges > self.budget.max_nudges:
                    raise _Stop("no_tool_calls", "you stopped calling tools")
                self.add(Message.user(prompts.NUDGE))
                continue
            nudges = 0
            calls = completion.tool_calls
            for index, call in enumerate(calls):
                if await self.run_call(call, allowed):
                    self.skip(calls[index + 1 :], "the answer was already submitted")
                    self.submitted_by = "model"
                    self.stop_reason = "submitted"
                    return
                if call.name in self.server_tools:
                    stop = await self.exhausted()
                    if stop is not None:
                        self.skip(calls[index + 1 :], stop.reason)
                        raise stop

    async def force(self, reason: str) -> None:
        """Ask once more with only `submit_answer`; on no valid submission, fall back."""
        self.add(Message.user(prompts.final_prompt(reason)))
        completion = await self.ask([SUBMIT_SPEC], self.budget.final_s)
        if completion is None:
            return
        for index, call in enumerate(completion.tool_calls):
            if await self.run_call(call, {SUBMIT_TOOL}):
                self.skip(completion.tool_calls[index + 1 :], "the answer was already submitted")
                self.submitted_by = "forced"
                return

    def fall_back(self) -> None:
        """Use the last recorded hypothesis, else one built from the model's last words."""
        if self.final is not None:
            return
        self.final = self.recorded or fallback_hypothesis(self.last_text)
        self.submitted_by = "fallback"

    def fail(self, exc: BaseException) -> None:
        """Mark the run failed with the exception's type and message."""
        self.status = "error"
        self.stop_reason = self.stop_reason or "error"
        self.error = f"{type(exc).__name__}: {exc}"

    async def collect_server_usage(self) -> None:
        """Record the server's own count of what was spent, when it still answers."""
        with anyio.move_on_after(SERVER_USAGE_TIMEOUT_S):
            try:
                await self.server_queries()
            except Exception:  # the server may be gone after an error; its count is optional
                return

    def close(self) -> InvestigationResult:
        """Settle the final hypothesis, fill the log's summary and build the result."""
        self.fall_back()
        assert self.final is not None and self.submitted_by is not None
        self.log.final = FinalAnswer(
            hypothesis=self.final.model_dump(mode="json"), submitted_by=self.submitted_by
        )
        self.log.status = self.status
        self.log.stop_reason = self.stop_reason
        self.log.error = self.error
        self.log.usage.turns = self.turn
        self.log.usage.wall_s = round(self.elapsed(), 3)
        self.log.ended_at = now_iso()
        return InvestigationResult(
            hypothesis=self.final,
            submitted_by=self.submitted_by,
            status=self.status,
            stop_reason=self.stop_reason,
            error=self.error,
            log=self.log,
        )


async def investigate(
    provider: Provider,
    session: ToolSource,
    *,
    budget: AgentBudget | None = None,
    system_prompt: str | None = None,
    task_prompt: str | None = None,
    log: str | os.PathLike[str] | None = None,
    kind: str | None = None,
    organism: str | None = None,
    agent: str | None = None,
    profile: str | None = None,
    transport: str | None = None,
) -> InvestigationResult:
    """Run one investigation over an open tool session; always returns a result.

    `log` is where to write the JSON run log (also written when the run fails or is
    interrupted). `kind` ("blackbox" | "method") picks the default system prompt, inferred
    from the tools when None; `organism`, `agent`, `profile` and `transport` are recorded in the
    log only and never shown to the model.
    """
    budget = budget or AgentBudget()
    run_log = RunLog(
        organism=organism,
        agent=agent or kind,
        profile=profile,
        transport=transport,
        provider=getattr(provider, "name", type(provider).__name__),
        model=str(getattr(provider, "model", "")),
        budget=budget.model_dump(),
    )
    run = _Run(provider, session, budget, run_log)
    with capture_events(run_log, run.start):
        return await _drive(run, system_prompt, task_prompt, kind, log)


async def _drive(
    run: _Run,
    system_prompt: str | None,
    task_prompt: str | None,
    kind: str | None,
    log: str | os.PathLike[str] | None,
) -> InvestigationResult:
    """Run the phases, settle the outcome and write the log (also when interrupted)."""
    try:
        try:
            await run.main(system_prompt, task_prompt, kind)
        except _Stop as stop:
            run.stop_reason = stop.code
            if stop.code != "no_tool_calls":
                run.status = "budget"
            await run.force(stop.reason)
    except Exception as exc:  # a provider or server failure ends the run, never the caller
        run.fail(exc)
    except BaseException as exc:  # cancelled or interrupted: still leave a log, then re-raise
        run.fail(exc)
        run.error = f"interrupted ({type(exc).__name__})"
        result = run.close()
        if log is not None:
            result.log_path = result.log.save(log)
        raise
    await run.collect_server_usage()
    result = run.close()
    if log is not None:
        result.log_path = result.log.save(log)
    return result


def failed_result(
    exc: BaseException,
    provider: Provider,
    budget: AgentBudget,
    *,
    organism: str | None = None,
    agent: str | None = None,
    profile: str | None = None,
    transport: str | None = None,
) -> InvestigationResult:
    """The result of a run that could not start (e.g. the server failed to launch)."""
    log = RunLog(
        organism=organism,
        agent=agent,
        profile=profile,
        transport=transport,
        provider=getattr(provider, "name", type(provider).__name__),
        model=str(getattr(provider, "model", "")),
        budget=budget.model_dump(),
    )
    run = _Run(provider, _NoServer(), budget, log)
    run.fail(exc)
    return run.close()


class _NoServer:
    """The tool source of a run whose server never started: it offers nothing."""

    async def list_tools(self) -> list[ToolSpec]:
        return []

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> Any:
        raise RuntimeError("no server")

    async def budget(self) -> dict[str, Any] | None:
        return None
