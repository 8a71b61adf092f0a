"""The server as a subprocess: stdio and streamable HTTP with the mcp client, and MCP Inspector."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp
import pytest
from mcp.client.streamable_http import streamable_http_client
from serverfakes import free_port, wait_for_http

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "stdio_server.py"
INSPECTOR = ["npx", "-y", "@modelcontextprotocol/inspector@0.15", "--cli"]


def stdio_params(**env: str) -> mcp.StdioServerParameters:
    return mcp.StdioServerParameters(
        command=sys.executable, args=[str(SCRIPT)], env={**os.environ, **env}
    )


def test_stdio_subprocess_serves_tools_and_survives_stray_output():
    async def main() -> tuple[Any, ...]:
        async with mcp.Client(stdio_params(DIFFSCOPE_TEST_TOOL_CALLS="3")) as client:
            listed = await client.list_tools()
            added = await client.call_tool("add", {"a": 20, "b": 22})
            noisy = await client.call_tool("noisy", {})
            crash = await client.call_tool("fails", {"mode": "crash"})
            spent = await client.call_tool("add", {"a": 1})
            organism = await client.read_resource("diffscope://organism")
            return listed, added, noisy, crash, spent, organism

    listed, added, noisy, crash, spent, organism = anyio.run(main)
    assert {tool.name for tool in listed.tools} >= {"add", "query_models", "noisy"}
    assert added.structured_content == {"total": 42}
    assert noisy.structured_content == {"text": "still fine"}  # prints did not break the wire
    assert crash.is_error and "internal error in fails: RuntimeError: boom" in crash.content[0].text
    assert spent.is_error and "budget spent: tool_calls used 3 of 3" in spent.content[0].text
    assert "secret" not in organism.contents[0].text


def test_streamable_http_subprocess():
    port = free_port()
    token = "transport-test-token-0123456789"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "http", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "DIFFSCOPE_TOKEN": token},
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        wait_for_http(url, proc, 30, describe=lambda: proc.stderr.read().decode())

        async def main() -> tuple[Any, Any]:
            http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"})
            async with mcp.Client(streamable_http_client(url, http_client=http)) as client:
                listed = await client.list_tools()
                return listed, await client.call_tool("echo", {"text": "over http"})

        listed, echoed = anyio.run(main)
        assert len(listed.tools) == 7
        assert echoed.structured_content == {"text": "over http"}
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.stdout.read() == b""  # nothing on stdout, logs go to stderr


# --- MCP Inspector (npx) --------------------------------------------------------------------

needs_npx = pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed")


@pytest.fixture(scope="module")
def inspector_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Run every inspector command at once (each takes seconds) and parse their JSON output."""
    config = tmp_path_factory.mktemp("inspector") / "claude_desktop_config.json"
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "diffscope-kl": {
                        "command": sys.executable,
                        "args": [str(SCRIPT)],
                        "env": {"DIFFSCOPE_TEST_PROFILE": "kl"},
                    }
                }
            }
        )
    )
    server = [sys.executable, str(SCRIPT)]
    commands = {
        "list": [*server, "--method", "tools/list"],
        "call": [*server, "--method", "tools/call", "--tool-name", "add", "--tool-arg", "a=1"],
        "call_list_arg": [
            *server,
            "--method",
            "tools/call",
            "--tool-name",
            "query_models",
            "--tool-arg",
            'prompts=["hi", "there"]',
            "max_new_tokens=3",
        ],
        "error": [*server, "--method", "tools/call", "--tool-name", "add", "--tool-arg", "a=500"],
        "config": ["--config", str(config), "--server", "diffscope-kl", "--method", "tools/list"],
    }
    procs = {
        name: subprocess.Popen(
            [*INSPECTOR, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=HERE
        )
        for name, args in commands.items()
    }
    runs: dict[str, dict[str, Any]] = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"{name}: {err.decode()[-2000:]}"
        runs[name] = json.loads(out)
    return runs


@needs_npx
def test_inspector_lists_tools_with_schemas(inspector_runs):
    tools = {tool["name"]: tool for tool in inspector_runs["list"]["tools"]}
    assert len(tools) == 7
    assert tools["add"]["inputSchema"]["properties"]["a"]["maximum"] == 100
    assert tools["add"]["outputSchema"]["required"] == ["total"]
    assert tools["add"]["annotations"]["readOnlyHint"] is True


@needs_npx
def test_inspector_calls_tools(inspector_runs):
    call = inspector_runs["call"]
    assert call["isError"] is False
    assert call["structuredContent"] == {"total": 1}
    listed = inspector_runs["call_list_arg"]
    assert listed["isError"] is False
    assert listed["structuredContent"]["answers"] == ["HI", "THERE"]


@needs_npx
def test_inspector_reports_errors_in_is_error(inspector_runs):
    error = inspector_runs["error"]
    assert error["isError"] is True  # the inspector itself still exits 0
    assert "a: Input should be less than or equal to 100" in error["content"][0]["text"]


@needs_npx
def test_inspector_config_file_in_claude_desktop_format(inspector_runs):
    names = {tool["name"] for tool in inspector_runs["config"]["tools"]}
    assert names == {"query_models", "add", "slow"}  # env from the config chose profile "kl"
