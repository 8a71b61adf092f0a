"""The MCP tool session: tool specs from MCP tools, result text, connecting, the budget report."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest
from loopfakes import PNG, make_server
from mcp_types import CallToolResult, ImageContent, TextContent

from diffscope.agent.session import ToolResult, ToolSession, result_text, stdio_parameters
from diffscope.llm import ProviderError
from diffscope.tools import Budget


def with_session(body: Any, server: Any = None) -> Any:
    async def main() -> Any:
        async with ToolSession.connect(server or make_server()) as session:
            return await body(session)

    return anyio.run(main)


def test_lists_tools_as_specs() -> None:
    async def body(session: ToolSession) -> Any:
        return await session.list_tools(), session.instructions

    specs, instructions = with_session(body)
    by_name = {spec.name: spec for spec in specs}
    assert list(by_name) == ["query_models", "add", "fails", "plot", "big", "slow"]
    add = by_name["add"].parameters
    assert add["type"] == "object" and add["required"] == ["a"]
    assert add["properties"]["a"]["maximum"] == 100
    assert by_name["add"].description.startswith("Add two small numbers.")
    assert by_name["plot"].parameters["properties"] == {}
    assert instructions and "diffscope" in instructions


def test_calls_tools_and_reads_the_budget() -> None:
    async def body(session: ToolSession) -> Any:
        return (
            await session.call_tool("add", {"a": 1, "b": 2}),
            await session.call_tool("plot", {}),
            await session.call_tool("fails", {"mode": "tool"}),
            await session.call_tool("add", {"a": "x"}),
            await session.call_tool("missing", {}),
            await session.budget(),
        )

    added, plotted, failed, invalid, missing, budget = with_session(
        body, make_server(budget=Budget(tool_calls=10))
    )
    assert added == ToolResult(text='{"total":3}', structured={"total": 3})
    assert plotted.text == '{"text":"a plot"}\n[image omitted]' and plotted.images == 1
    assert failed.is_error and failed.text == "mode 'tool' always fails: pick another tool"
    assert failed.structured is None
    assert invalid.is_error and "invalid arguments for add" in invalid.text
    assert missing.is_error and "missing" in missing.text
    assert budget["limits"]["tool_calls"] == 10 and budget["used"]["tool_calls"] == 3


def test_result_text_of_plain_results() -> None:
    image = ImageContent(type="image", data="AA==", mime_type="image/png")
    only_image = result_text(CallToolResult(content=[image]))
    assert only_image == ToolResult(text="[image omitted]", images=1)
    texts = result_text(
        CallToolResult(
            content=[TextContent(type="text", text="a"), TextContent(type="text", text="b")]
        )
    )
    assert texts.text == "a\nb" and not texts.is_error
    assert PNG  # the fake plot's bytes never reach the text


def test_connect_checks_its_target() -> None:
    async def string_command() -> None:
        async with ToolSession.connect("python server.py"):  # type: ignore[arg-type]
            pass

    with pytest.raises(TypeError, match="list of strings"):
        anyio.run(string_command)

    async def env_for_in_process() -> None:
        async with ToolSession.connect(make_server(), env={"A": "1"}):
            pass

    with pytest.raises(ValueError, match="in-process"):
        anyio.run(env_for_in_process)
    with pytest.raises(ValueError, match="needs a command"):
        stdio_parameters([])


def test_stdio_parameters_merge_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFSCOPE_SESSION_TEST", "inherited")
    params = stdio_parameters([sys.executable, "-m", "x", 3], env={"EXTRA": "1"})  # type: ignore[list-item]
    assert params.command == sys.executable and params.args == ["-m", "x", "3"]
    assert params.env["DIFFSCOPE_SESSION_TEST"] == "inherited" and params.env["EXTRA"] == "1"
    alone = stdio_parameters(["prog"], env={"EXTRA": "1"}, inherit_env=False)
    assert alone.env == {"EXTRA": "1"}


def test_missing_heuristic_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffscope.agent.run import build_provider

    monkeypatch.setitem(sys.modules, "diffscope.agent.heuristic", None)
    with pytest.raises(ProviderError, match="heuristic investigator is not available"):
        build_provider("heuristic", "method")
