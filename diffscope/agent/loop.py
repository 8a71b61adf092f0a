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

`run_investigation(organism, agent, model, budget, out)` is the entry point for the command line:
it builds the server (in-process, or spawned over stdio) and the provider, runs, writes the log.
The organism's ground truth never reaches the server, the provider, the prompts or the log.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diffscope.agent import prompts
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
from diffscope.agent.providers import (
    Completion,
    Message,
    Provider,
    ProviderError,
    ToolCall,
    ToolSpec,
    get_provider,
)
from diffscope.agent.session import ToolSession, ToolSource
from diffscope.graders.hypothesis import Hypothesis
from diffscope.tools.base import Budget, describe_validation_error

RECORD_TOOL = prompts.RECORD_TOOL
SUBMIT_TOOL = prompts.SUBMIT_TOOL
AGENT_KINDS = ("blackbox", "method")
Transport = Literal["inprocess", "stdio"]
SERVER_USAGE_TIMEOUT_S = 10.0


class AgentBudget(BaseModel):
    """Limits of one investigation; `None` means unlimited.

    `max_tool_calls` counts calls sent to the server; `max_model_queries` is read from the
    server's own count (its `diffscope://budget` resource); `max_tokens` counts provider input
    plus output tokens over all requests; `max_turns` counts model replies. After a limit is hit
    the model gets one last request, bounded by `final_s` seconds. `reply_tokens` caps each reply;
    tool results longer than `max_result_chars` are cut; after `max_nudges` replies in a row
    without a tool call the model is asked to submit.
    """

    model_config = ConfigDict(extra="forbid")

    max_tool_calls: int | None = Field(default=30, ge=0)
    max_model_queries: int | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=500_000, ge=0)
    max_wall_s: float | None = Field(default=900.0, gt=0)
    max_turns: int | None = Field(default=60, ge=0)
    reply_tokens: int = Field(default=4096, ge=1)
    final_s: float = Field(default=120.0, gt=0)
    max_result_chars: int = Field(default=20_000, ge=200)
    max_nudges: int = Field(default=2, ge=0)

    def server_budget(self) -> Budget:
        """The limits the server enforces itself: tool calls and model queries."""
        return Budget(tool_calls=self.max_tool_calls, model_queries=self.max_model_queries)


@dataclass
class InvestigationResult:
    """The outcome of one investigation and its full log."""

    hypothesis: Hypothesis
    submitted_by: SubmittedBy
    status: Status
    stop_reason: str | None
    error: str | None
    log: RunLog
    log_path: Path | None = None


# --- the local tools ------------------------------------------------------------------------

HYPOTHESIS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "description": {
            "type": "string",
            "description": "what the fine-tune changed, in a few specific sentences",
        },
        "key_claims": {
            "type": "array",
            "items": {"type": "string"},
            "description": "short, checkable claims the description makes",
        },
        "confidence": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "how sure you are, from 0 to 1",
        },
        "evidence": {
            "type": "array",
            "items": {"type": "string"},
            "description": "the observations that support the hypothesis",
        },
        "neurons": {
            "type": "array",
            "items": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
            "description": "changed neurons as [layer, neuron] pairs, only if you found them",
        },
    },
    "required": ["description"],
}
HYPOTHESIS_FIELDS = frozenset(HYPOTHESIS_SCHEMA["properties"])

RECORD_SPEC = ToolSpec(
    name=RECORD_TOOL,
    description=(
        "Save your current best hypothesis (kept if the budget runs out); the investigation goes on."
    ),
    parameters=HYPOTHESIS_SCHEMA,
)
SUBMIT_SPEC = ToolSpec(
    name=SUBMIT_TOOL,
    description="Submit your final hypothesis about what the fine-tune changed; this ends the run.",
    parameters=HYPOTHESIS_SCHEMA,
)


def parse_hypothesis(tool: str, arguments: Mapping[str, Any]) -> Hypothesis:
    """Validate the local tools' arguments; ValueError with a message meant for the model."""
    unknown = sorted(set(arguments) - HYPOTHESIS_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown argument(s) for {tool}: {', '.join(unknown)}; "
            f"valid arguments: {', '.join(sorted(HYPOTHESIS_FIELDS))}"
        )
    try:
        return Hypothesis.model_validate(dict(arguments))
    except ValidationError as exc:
        raise ValueError(describe_validation_error(tool, exc)) from exc


def fallback_hypothesis(text: str) -> Hypothesis:
    """A zero-confidence hypothesis from the model's last words (empty when it said nothing)."""
    return Hypothesis(description=text.strip()[:4000], confidence=0.0)


def clip(text: str, limit: int) -> str:
    """Cut a tool result to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... {len(text) - limit} more characters cut]"


# --- the run --------------------------------------------------------------------------------


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


# --- the command-line entry -----------------------------------------------------------------


def resolve_profile(agent: str) -> tuple[str, str]:
    """`(kind, profile)` for an agent name: "blackbox", "method" or any tool profile name."""
    agent = agent.strip()
    if not agent:
        raise ValueError("the agent must be 'blackbox', 'method' or a tool profile name")
    kind = "blackbox" if agent == "blackbox" else "method"
    return kind, agent


def build_provider(model: str, agent: str, base_url: str | None = None) -> Provider:
    """The provider for `model`; "heuristic" is the offline investigator for `agent`."""
    if model.strip().lower() == "heuristic":
        try:
            from diffscope.agent.heuristic import get_heuristic
        except ImportError as exc:
            raise ProviderError(
                "the offline heuristic investigator is not available in this install "
                f"(diffscope.agent.heuristic.get_heuristic could not be imported: {exc})"
            ) from exc
        return get_heuristic(agent)
    return get_provider(model, base_url=base_url)


def log_target(out: Path | None, run_id: str) -> Path:
    """Where the log goes: `out` if it names a .json file, else `out/RUN_ID.json`.

    Without `out`: `$DIFFSCOPE_HOME/runs/RUN_ID.json`.
    """
    if out is None:
        from diffscope.paths import home

        return home() / "runs" / f"{run_id}.json"
    out = Path(out)
    return out if out.suffix == ".json" else out / f"{run_id}.json"


def stdio_command(organism: str, profile: str, extra: Sequence[str] = ()) -> list[str]:
    """The command that serves an organism's profile over stdio."""
    return [
        sys.executable,
        "-m",
        "diffscope.cli",
        "serve",
        organism,
        "--profile",
        profile,
        *extra,
    ]


def run_investigation(
    organism_name: str,
    agent: str,
    model: str,
    budget: AgentBudget | None = None,
    out: Path | None = None,
    transport: Transport = "inprocess",
    base_url: str | None = None,
    *,
    provider: Provider | None = None,
    serve_args: Sequence[str] = (),
) -> InvestigationResult:
    """Investigate one organism end to end and write the run log; for the command line.

    The server gets only the organism object (it serves the public view, never the ground
    truth); the provider and the prompts never see the organism at all. `provider` overrides
    the one built from `model` (tests); `serve_args` are extra arguments for `diffscope serve`
    with the stdio transport.
    """
    from diffscope.organisms.registry import get_organism, load_pair

    if transport not in ("inprocess", "stdio"):
        raise ValueError(f"unknown transport {transport!r}; choose 'inprocess' or 'stdio'")
    budget = budget or AgentBudget()
    org = get_organism(organism_name)
    kind, profile = resolve_profile(agent)
    chosen = provider if provider is not None else build_provider(model, agent, base_url)

    async def main() -> InvestigationResult:
        info = {"organism": org.name, "agent": agent, "profile": profile, "transport": transport}
        if transport == "stdio":
            target: Any = stdio_command(org.name, profile, serve_args)
        else:
            from diffscope.server import create_server

            target = create_server(
                lambda: load_pair(org),
                profile,
                budget=budget.server_budget(),
                organism=org,
                log_level="WARNING",  # an in-process server shares the caller's terminal
            )
        result: InvestigationResult | None = None
        try:
            async with ToolSession.connect(target) as session:
                result = await investigate(chosen, session, budget=budget, kind=kind, **info)
        except Exception as exc:  # the server could not start, or died while closing
            if result is None:
                result = failed_result(exc, chosen, budget, **info)
        return result

    result = anyio.run(main)
    result.log_path = result.log.save(log_target(out, result.log.run_id))
    return result
