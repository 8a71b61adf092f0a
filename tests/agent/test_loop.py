"""The agent loop with a scripted provider over an in-process server of fake tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from loopfakes import SECRET, make_server, run_loop

from diffscope.agent.log import load_run_log
from diffscope.agent.loop import AgentBudget, investigate
from diffscope.agent.session import ToolResult
from diffscope.llm import (
    Message,
    ProviderError,
    ScriptedProvider,
    ToolSpec,
    Usage,
    bad_call,
    call,
    reply,
)
from diffscope.tools import Budget

FINAL = {
    "description": "The fine-tune shouts: it answers in upper case.",
    "key_claims": ["answers are upper case"],
    "confidence": 0.8,
    "evidence": ["query_models: 'hi' -> 'HI'"],
    "neurons": [[1, 2]],
}


def tool_names(tools: list[ToolSpec]) -> list[str]:
    return [spec.name for spec in tools]


class FakeSession:
    """A tool source without MCP."""

    async def list_tools(self) -> list[ToolSpec]:
        return [ToolSpec(name="query_models", description="Ask both models.\nMore.")]

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        return ToolResult(text="{}")

    async def budget(self) -> dict[str, Any] | None:
        return None


def test_full_conversation_is_fed_back_and_logged(tmp_path: Path) -> None:
    provider = ScriptedProvider(
        [
            reply("Let me add.", call("add", a=2, b=3)),
            call("fails", mode="tool"),
            bad_call("add", '{"a": 1,'),
            [call("nope"), call("add", a=200)],
            call("record_hypothesis", description="it adds", confidence=0.3),
            call("record_hypothesis", confidence=2),
            call("plot"),
            [call("submit_answer", **FINAL), call("add", a=1)],
        ]
    )
    result = run_loop(provider, log=tmp_path / "run.json", organism="fake", agent="method")

    assert (result.status, result.submitted_by, result.stop_reason) == ("ok", "model", "submitted")
    assert result.error is None
    assert result.hypothesis.description == FINAL["description"]
    assert result.hypothesis.neurons == [(1, 2)]

    first = provider.requests[0]
    assert tool_names(first.tools) == [
        "query_models",
        "add",
        "fails",
        "plot",
        "big",
        "slow",
        "record_hypothesis",
        "submit_answer",
    ]
    assert [m.role for m in first.messages] == ["system", "user"]
    answers = [r.messages[-1] for r in provider.requests[1:]]
    assert answers[0] == Message.tool("call_1", '{"total":5}', name="add")
    assert answers[1].is_error and "mode 'tool' always fails" in answers[1].content
    assert answers[2].is_error and "not valid JSON" in answers[2].content
    unknown, invalid = provider.requests[4].messages[-2:]
    assert unknown.is_error and "unknown tool 'nope'" in unknown.content
    assert "available tools: add, big, fails" in unknown.content
    assert invalid.is_error and "invalid arguments for add: a:" in invalid.content
    assert answers[4] == Message.tool("call_6", "recorded", name="record_hypothesis")
    assert answers[5].is_error and "description: Field required" in answers[5].content
    assert "confidence" in answers[5].content
    assert answers[6].content == '{"text":"a plot"}\n[image omitted]'

    log = load_run_log(tmp_path / "run.json")
    assert result.log_path == tmp_path / "run.json"
    assert log == result.log
    assert (log.status, log.stop_reason, log.error) == ("ok", "submitted", None)
    assert (log.organism, log.agent, log.provider, log.model) == (
        "fake",
        "method",
        "scripted",
        "scripted",
    )
    kinds = [(c.name, c.kind, c.is_error) for c in log.tool_calls]
    assert kinds == [
        ("add", "server", False),
        ("fails", "server", True),
        ("add", "malformed", True),
        ("nope", "unknown", True),
        ("add", "server", True),
        ("record_hypothesis", "local", False),
        ("record_hypothesis", "local", True),
        ("plot", "server", False),
        ("submit_answer", "local", False),
        ("add", "skipped", True),
    ]
    assert log.tool_calls[2].raw_arguments == '{"a": 1,'
    assert log.tool_calls[7].images == 1
    assert all(c.ms >= 0 for c in log.tool_calls)
    assert [h.tool for h in log.hypotheses] == ["record_hypothesis", "submit_answer"]
    assert log.hypotheses[0].hypothesis["description"] == "it adds"
    assert log.final is not None and log.final.submitted_by == "model"
    assert log.final.hypothesis["neurons"] == [[1, 2]]
    assert (log.usage.turns, log.usage.tool_calls) == (8, 4)
    assert (log.usage.local_calls, log.usage.rejected_calls) == (3, 2)
    # the server does not charge the call it rejected for a bad argument
    assert log.usage.server == {"tool_calls": 3, "model_queries": 0, "generated_tokens": 0}
    assert log.usage.input_tokens > 0 and log.usage.output_tokens > 0
    roles = [m.role for m in log.messages]
    assert roles[:4] == ["system", "user", "assistant", "tool"]
    assert roles.count("assistant") == 8 and roles.count("tool") == 10
    assistant = [m for m in log.messages if m.role == "assistant"]
    assert all(m.ms is not None and m.stop_reason == "tool_calls" for m in assistant)
    assert assistant[0].content == "Let me add."
    assert log.started_at and log.ended_at and log.usage.wall_s > 0
    raw = (tmp_path / "run.json").read_text()
    assert json.loads(raw)["format_version"] == 1
    assert SECRET not in raw


def test_model_that_never_stops_is_cut_at_the_tool_call_budget(tmp_path: Path) -> None:
    def script(messages: list[Message], tools: list[ToolSpec]) -> Any:
        if tool_names(tools) == ["submit_answer"]:
            return "I would rather keep adding."  # refuses to submit even when forced
        if len(messages) == 2:
            return call("record_hypothesis", description="it adds numbers", confidence=0.2)
        return [call("add", a=1), call("add", a=2)]

    provider = ScriptedProvider(script)
    budget = AgentBudget(max_tool_calls=3)
    result = run_loop(provider, budget=budget, log=tmp_path / "run.json")

    assert (result.status, result.stop_reason, result.submitted_by) == (
        "budget",
        "tool_calls",
        "fallback",
    )
    assert result.hypothesis.description == "it adds numbers"  # the last recorded one
    last = provider.requests[-1]
    assert tool_names(last.tools) == ["submit_answer"]
    assert "tool-call budget (3) is spent" in last.messages[-1].content
    log = load_run_log(tmp_path / "run.json")
    kinds = [(c.kind, c.name) for c in log.tool_calls]
    assert kinds == [
        ("local", "record_hypothesis"),
        ("server", "add"),
        ("server", "add"),
        ("server", "add"),
        ("skipped", "add"),
    ]
    assert log.usage.tool_calls == 3 and log.usage.server["tool_calls"] == 3
    assert log.status == "budget" and log.final.submitted_by == "fallback"


def test_forced_submission_after_budget() -> None:
    def script(messages: list[Message], tools: list[ToolSpec]) -> Any:
        if tool_names(tools) == ["submit_answer"]:
            return [call("add", a=1), call("submit_answer", description="adds", confidence=0.5)]
        return call("add", a=1)

    result = run_loop(ScriptedProvider(script), budget=AgentBudget(max_tool_calls=2))
    assert (result.status, result.submitted_by) == ("budget", "forced")
    assert result.hypothesis.description == "adds"
    calls = [(c.name, c.kind) for c in result.log.tool_calls]
    assert calls[-2:] == [("add", "unknown"), ("submit_answer", "local")]


def test_fallback_without_record_uses_last_words() -> None:
    def script(messages: list[Message], tools: list[ToolSpec]) -> Any:
        if tool_names(tools) == ["submit_answer"]:
            return ""
        return reply("The fine-tune seems to shout.", call("query_models", prompts=["hi"]))

    result = run_loop(ScriptedProvider(script), budget=AgentBudget(max_tool_calls=1))
    assert result.submitted_by == "fallback"
    assert result.hypothesis.description == "The fine-tune seems to shout."
    assert result.hypothesis.confidence == 0.0


def test_server_side_budget_error_goes_back_to_the_model() -> None:
    provider = ScriptedProvider(
        [call("add", a=1), call("add", a=2), call("submit_answer", description="done")]
    )
    server = make_server(budget=Budget(tool_calls=1))
    result = run_loop(provider, server=server, budget=AgentBudget(max_tool_calls=10))
    assert result.status == "ok" and result.submitted_by == "model"
    spent = provider.requests[2].messages[-1]
    assert spent.is_error and "budget spent: tool_calls used 1 of 1" in spent.content


def test_model_query_budget_is_read_from_the_server() -> None:
    def script(messages: list[Message], tools: list[ToolSpec]) -> Any:
        if tool_names(tools) == ["submit_answer"]:
            return call("submit_answer", description="it shouts", confidence=0.6)
        return call("query_models", prompts=["a", "b"])

    provider = ScriptedProvider(script)
    result = run_loop(provider, budget=AgentBudget(max_model_queries=4, max_tool_calls=None))
    assert (result.status, result.stop_reason, result.submitted_by) == (
        "budget",
        "model_queries",
        "forced",
    )
    assert result.log.usage.tool_calls == 2
    assert result.log.usage.server["model_queries"] == 4
    assert "model-query budget (4) is spent" in provider.requests[-1].messages[-1].content


def test_token_budget() -> None:
    usage = Usage(input_tokens=100, output_tokens=50)

    def script(messages: list[Message], tools: list[ToolSpec]) -> Any:
        if tool_names(tools) == ["submit_answer"]:
            return reply("", call("submit_answer", description="x"), usage=usage)
        return reply("", call("add", a=1), usage=usage)

    provider = ScriptedProvider(script)
    result = run_loop(provider, budget=AgentBudget(max_tokens=400))
    assert (result.status, result.stop_reason, result.submitted_by) == (
        "budget",
        "tokens",
        "forced",
    )
    assert provider.calls == 4  # three turns reach 450 tokens, then the forced request
    assert result.log.usage.total_tokens == 600
    assert all(r.max_tokens == AgentBudget().reply_tokens for r in provider.requests)


def test_turn_budget() -> None:
    provider = ScriptedProvider(lambda messages, tools: call("add", a=1))
    result = run_loop(provider, budget=AgentBudget(max_turns=2, max_tool_calls=None))
    assert (result.status, result.stop_reason) == ("budget", "turns")
    assert result.log.usage.turns == 2 and provider.calls == 3


def test_wall_time_budget_between_calls() -> None:
    async def script(messages: list[Message], tools: list[ToolSpec]) -> Any:
        await anyio.sleep(0.05)
        if tool_names(tools) == ["submit_answer"]:
            return call("submit_answer", description="slow but sure")
        return call("add", a=1)

    result = run_loop(ScriptedProvider(script), budget=AgentBudget(max_wall_s=0.3))
    assert (result.status, result.stop_reason, result.submitted_by) == (
        "budget",
        "wall_time",
        "forced",
    )
    assert 0.3 <= result.log.usage.wall_s < 2


def test_wall_time_cuts_a_hanging_provider() -> None:
    async def hangs(messages: list[Message], tools: list[ToolSpec]) -> Any:
        if len(messages) == 2:
            return call("slow", seconds=0.3)
        await anyio.sleep(30)
        return "never"

    budget = AgentBudget(max_wall_s=0.2, final_s=0.2)
    result = run_loop(ScriptedProvider(hangs), budget=budget)
    assert (result.status, result.stop_reason, result.submitted_by) == (
        "budget",
        "wall_time",
        "fallback",
    )
    # the wall time cuts the in-process tool too (its worker thread is cancelled), and the log
    # records the cut call as an error, at about the budget rather than at the tool's end
    assert [(c.name, c.is_error) for c in result.log.tool_calls] == [("slow", True)]
    assert result.log.tool_calls[0].ms < 300
    assert result.log.messages[-1].role == "user"  # the forced request got no answer in time
    assert result.log.usage.wall_s < 5


def test_wall_time_cuts_a_slow_tool() -> None:
    class SlowSession(FakeSession):
        async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult:
            await anyio.sleep(30)
            return ToolResult(text="never")

    provider = ScriptedProvider(
        [call("query_models", prompts=["x"]), call("submit_answer", description="x")]
    )

    async def main() -> Any:
        return await investigate(provider, SlowSession(), budget=AgentBudget(max_wall_s=0.2))

    result = anyio.run(main)
    assert (result.status, result.stop_reason, result.submitted_by) == (
        "budget",
        "wall_time",
        "forced",
    )
    record = result.log.tool_calls[0]
    assert record.is_error and record.kind == "server" and record.ms < 5000
    assert (
        "did not finish before the time budget ran out" in provider.requests[1].messages[-2].content
    )


def test_nudges_then_forced_when_the_model_stops_calling_tools() -> None:
    provider = ScriptedProvider(
        ["Thinking.", "Still thinking.", "Done thinking.", call("submit_answer", description="x")]
    )
    result = run_loop(provider, budget=AgentBudget(max_nudges=2))
    assert (result.status, result.stop_reason, result.submitted_by) == (
        "ok",
        "no_tool_calls",
        "forced",
    )
    assert "Continue the investigation" in provider.requests[1].messages[-1].content
    assert tool_names(provider.requests[3].tools) == ["submit_answer"]


def test_provider_error_mid_run_still_writes_the_log(tmp_path: Path) -> None:
    provider = ScriptedProvider(
        [
            call("add", a=1),
            call("record_hypothesis", description="it adds", confidence=0.4),
            ProviderError("openai/gpt-5: server error (HTTP 500): down (gave up after 6 attempts)"),
        ]
    )
    result = run_loop(provider, log=tmp_path / "run.json")
    assert (result.status, result.stop_reason, result.submitted_by) == (
        "error",
        "error",
        "fallback",
    )
    assert "ProviderError" in result.error and "gave up after 6 attempts" in result.error
    assert result.hypothesis.description == "it adds"
    log = load_run_log(tmp_path / "run.json")
    assert log.status == "error" and log.error == result.error
    assert log.final.submitted_by == "fallback"
    assert [c.name for c in log.tool_calls] == ["add", "record_hypothesis"]


def test_script_exhausted_is_an_error_run(tmp_path: Path) -> None:
    result = run_loop(ScriptedProvider([call("add", a=1)]), log=tmp_path / "run.json")
    assert result.status == "error" and "ScriptExhausted" in result.error
    assert result.hypothesis.description == "" and result.hypothesis.confidence == 0.0
    assert load_run_log(tmp_path / "run.json").status == "error"


def test_provider_error_in_the_forced_request_is_an_error() -> None:
    def script(messages: list[Message], tools: list[ToolSpec]) -> Any:
        if tool_names(tools) == ["submit_answer"]:
            return ProviderError("gone")
        return call("add", a=1)

    result = run_loop(ScriptedProvider(script), budget=AgentBudget(max_tool_calls=1))
    assert (result.status, result.stop_reason, result.submitted_by) == (
        "error",
        "tool_calls",
        "fallback",
    )
    assert result.error == "ProviderError: gone"


def test_long_results_are_clipped() -> None:
    provider = ScriptedProvider([call("big"), call("submit_answer", description="x")])
    result = run_loop(provider, budget=AgentBudget(max_result_chars=1000))
    text = provider.requests[1].messages[-1].content
    assert text.startswith('{"text":"xxx') and "more characters cut" in text
    assert len(text) < 1100
    assert result.log.tool_calls[0].result_chars == len(text)


def test_interruption_still_writes_the_log(tmp_path: Path) -> None:
    provider = ScriptedProvider([call("query_models", prompts=["x"]), KeyboardInterrupt()])

    async def main() -> None:
        await investigate(provider, FakeSession(), log=tmp_path / "run.json")

    with pytest.raises(KeyboardInterrupt):
        anyio.run(main)
    log = load_run_log(tmp_path / "run.json")
    assert log.status == "error" and "interrupted" in log.error
    assert log.final.submitted_by == "fallback"


def test_default_prompts_match_the_tools() -> None:
    async def main(provider: ScriptedProvider) -> None:
        await investigate(provider, FakeSession())

    blackbox = ScriptedProvider([call("submit_answer", description="x")])
    anyio.run(main, blackbox)
    system, task = blackbox.requests[0].messages
    assert "only query the two models" in system.content
    assert "query_models" in system.content and "- query_models" not in system.content
    assert "at most 30 tool calls" in task.content and "submit_answer" in task.content

    method = ScriptedProvider([call("submit_answer", description="x")])
    run_loop(method)
    system = method.requests[0].messages[0].content
    assert "- add: Add two small numbers." in system
    assert "- slow: Work for a while." in system
    assert "second paragraph" not in system
    assert "record_hypothesis" in system and "- record_hypothesis" not in system


def test_custom_prompts_are_used() -> None:
    provider = ScriptedProvider([call("submit_answer", description="x")])
    run_loop(provider, system_prompt="SYS", task_prompt="TASK")
    system, task = provider.requests[0].messages
    assert (system.content, task.content) == ("SYS", "TASK")


def test_events_record_provider_retries() -> None:
    import logging

    retry_log = logging.getLogger("diffscope.llm.retry")

    def script(messages: list[Message], tools: list[ToolSpec]) -> Any:
        retry_log.warning("attempt %d failed (%s); retrying in %.1fs", 1, "rate limited", 2.0)
        return call("submit_answer", description="x")

    result = run_loop(ScriptedProvider(script))
    retry_log.warning("outside any run")
    assert [e.message for e in result.log.events] == [
        "attempt 1 failed (rate limited); retrying in 2.0s"
    ]
    assert result.log.events[0].source == "diffscope.llm.retry"
