"""The provider that runs a scripted investigation plan: deterministic tool calls, no LLM.

A *plan* is a generator function `plan(view) -> Generator[Call, Result, dict]`: it yields the tool
calls it wants, receives each call's `Result` (parsed structured content, or an error), and returns
the arguments of `submit_answer`. `PlanProvider.complete` replays the plan from the start on every
turn, feeding it the results already in the conversation, and answers with the plan's next call;
the plan is deterministic, so the replay always takes the same path. Calls to tools the server does
not offer are answered locally with an error result (and never sent), so a plan written for the
method profile degrades to whatever a smaller profile offers. When the loop offers only
`submit_answer` (a spent budget), every further call the plan wants is answered with an error and
the plan must return its hypothesis.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from diffscope.llm.base import (
    TOOL_CALLS,
    Completion,
    Message,
    ToolCall,
    ToolSpec,
    Usage,
)

SUBMIT_TOOL = "submit_answer"
RECORD_TOOL = "record_hypothesis"
MAX_PLAN_STEPS = 64
CLOSERS = {"{": "}", "[": "]"}


@dataclass(frozen=True)
class Call:
    """A tool call a plan asks for."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """The answer to one `Call`: the parsed structured result, or an error message.

    `call_id` is the id the run log gives the call that produced it (None when the call was
    never sent), so a plan can cite it in its hypothesis' claims.
    """

    ok: bool
    data: dict[str, Any] | None = None
    error: str = ""
    call_id: str | None = None

    @classmethod
    def failed(cls, why: str) -> Result:
        """An error result."""
        return cls(ok=False, error=why)


@dataclass(frozen=True)
class View:
    """What a plan knows when it starts: the names of the server tools it may call."""

    tools: frozenset[str]

    def has(self, name: str) -> bool:
        """Whether the server offers `name`."""
        return name in self.tools


Plan = Generator[Call, Result, dict[str, Any]]
PlanFunction = Callable[[View], Plan]


def repair_json(text: str) -> Any:
    """Parse JSON that may have been cut short: keep the complete values and close the brackets.

    Returns None when nothing usable can be recovered.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    stack: list[str] = []
    in_string = escaped = False
    cut = -1  # index just after the last complete element inside a container
    cut_stack: list[str] = []
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in CLOSERS:
            stack.append(ch)
        elif ch in "}]":
            if not stack:
                break
            stack.pop()
            cut, cut_stack = i + 1, list(stack)
        elif ch == ",":
            cut, cut_stack = i, list(stack)
    if cut < 0:
        return None
    candidate = text[:cut] + "".join(CLOSERS[c] for c in reversed(cut_stack))
    try:
        return json.loads(candidate)
    except json.JSONDecodeError:
        return None


def parse_result(message: Message) -> Result:
    """A tool message as a `Result`: the first line parsed as (possibly cut) JSON."""
    if message.is_error:
        return Result.failed(message.content[:500])
    line = message.content.split("\n", 1)[0].strip()
    data = repair_json(line) if line else None
    if not isinstance(data, dict):
        return Result.failed(f"unreadable result: {line[:200]!r}")
    return Result(ok=True, data=data)


def history(messages: Sequence[Message]) -> list[tuple[ToolCall, Result | None]]:
    """The server tool calls made so far, in order, each with its answer (None if unanswered)."""
    answers = {m.tool_call_id: m for m in messages if m.role == "tool" and m.tool_call_id}
    calls: list[tuple[ToolCall, Result | None]] = []
    for message in messages:
        if message.role != "assistant":
            continue
        for call in message.tool_calls:
            if call.name in (SUBMIT_TOOL, RECORD_TOOL):
                continue
            answer = answers.get(call.id)
            calls.append((call, None if answer is None else parse_result(answer)))
    return calls


class PlanProvider:
    """A `Provider` that answers with the next tool call of a deterministic investigation plan."""

    def __init__(self, plan: PlanFunction, *, name: str) -> None:
        self.plan = plan
        self.name = name
        self.model = name
        self._tools: frozenset[str] | None = None

    async def complete(
        self,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        max_tokens: int = 2048,
        temperature: float | None = None,
    ) -> Completion:
        """The plan's next tool call, or its `submit_answer` call once it has concluded."""
        offered = {spec.name for spec in tools}
        server_tools = frozenset(offered - {SUBMIT_TOOL, RECORD_TOOL})
        past = history(messages)
        final = not server_tools
        if not final:
            self._tools = server_tools
        known = self._tools or frozenset(call.name for call, _ in past)
        wanted = self.next_step(known, past, final)
        index = len(past) + 1
        if isinstance(wanted, Call):
            call = ToolCall.of(f"h{index}", wanted.name, wanted.arguments)
        else:
            call = ToolCall.of(f"h{index}", SUBMIT_TOOL, wanted)
        return Completion(tool_calls=[call], stop_reason=TOOL_CALLS, usage=Usage(), model=self.name)

    def next_step(
        self,
        tools: frozenset[str],
        past: Sequence[tuple[ToolCall, Result | None]],
        final: bool,
    ) -> Call | dict[str, Any]:
        """Replay the plan over the past results; its next call, or its hypothesis when done.

        Past calls are matched to the plan's calls in order (a tool not in `tools` is answered
        with an error and never counts as a past call). In `final` mode (only `submit_answer`
        offered) every call beyond the past ones gets an error result.
        """
        view = View(tools=tools)
        plan = self.plan(view)
        used = 0
        send: Result | None = None
        for _ in range(MAX_PLAN_STEPS):
            try:
                wanted = next(plan) if send is None else plan.send(send)
            except StopIteration as done:
                return dict(done.value)
            if not view.has(wanted.name):
                send = Result.failed(f"{wanted.name} is not offered")
            elif used < len(past) and past[used][0].name == wanted.name:
                call, result = past[used]
                used += 1
                send = replace(result or Result.failed("no answer"), call_id=call.id)
            elif used < len(past) or final:
                send = Result.failed("not run: the budget is spent")
            else:
                return wanted
        plan.close()
        return {
            "description": "The investigation plan did not conclude; no conclusion is drawn.",
            "confidence": 0.0,
        }
