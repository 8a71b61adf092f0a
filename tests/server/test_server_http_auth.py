"""HTTP fit to share: the bearer token is required (401 with the WWW-Authenticate header the MCP
authorization spec asks for), Host headers are still checked, and each client session has its own
budget. One subprocess serving the fake tools over streamable HTTP (`stdio_server.py http PORT`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import mcp
import pytest
from mcp.client.streamable_http import streamable_http_client

from diffscope.server.auth import check_bind, resolve_token

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "stdio_server.py"
TOKEN = "test-token-0123456789abcdef"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    },
}
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, **env: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "http", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(proc.stderr.read().decode()) from None  # type: ignore[union-attr]
            time.sleep(0.1)


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    port = free_port()
    proc = start_server(port, DIFFSCOPE_TOKEN=TOKEN, DIFFSCOPE_TEST_TOOL_CALLS="1")
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


def client(url: str, token: str | None = TOKEN) -> mcp.Client:
    """A handshake-era client (its sessions carry Mcp-Session-Id) sending the token."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60))
    return mcp.Client(streamable_http_client(url, http_client=http), mode="legacy")


def test_http_without_the_token_is_refused(http_server: str):
    missing = httpx.post(http_server, json=INIT, headers=MCP_HEADERS, timeout=10)
    wrong = httpx.post(
        http_server,
        json=INIT,
        headers={**MCP_HEADERS, "authorization": "Bearer not-the-token-at-all"},
        timeout=10,
    )
    right = httpx.post(
        http_server,
        json=INIT,
        headers={**MCP_HEADERS, "authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert missing.status_code == 401 and wrong.status_code == 401
    challenge = missing.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    origin = http_server.removesuffix("/mcp")
    assert f'resource_metadata="{origin}/.well-known/oauth-protected-resource"' in challenge
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert "Authorization: Bearer TOKEN" in missing.json()["error_description"]
    assert right.status_code == 200
    metadata = httpx.get(f"{origin}/.well-known/oauth-protected-resource", timeout=10).json()
    assert metadata["resource"] == http_server
    assert metadata["bearer_methods_supported"] == ["header"]


def test_host_header_is_still_checked(http_server: str):
    forged = httpx.post(
        http_server,
        json=INIT,
        headers={**MCP_HEADERS, "authorization": f"Bearer {TOKEN}", "host": "evil.example:80"},
        timeout=10,
    )
    assert forged.status_code in (400, 403, 421)


def test_two_http_sessions_have_separate_budgets(http_server: str):
    async def main() -> tuple[Any, ...]:
        async with client(http_server) as first, client(http_server) as second:
            a1 = await first.call_tool("add", {"a": 1, "b": 1})
            a2 = await first.call_tool("add", {"a": 2, "b": 2})  # first's budget of 1 is spent
            b1 = await second.call_tool("add", {"a": 3, "b": 3})
            budget_a = await first.read_resource("diffscope://budget")
            budget_b = await second.read_resource("diffscope://budget")
            return a1, a2, b1, budget_a, budget_b

    a1, a2, b1, budget_a, budget_b = anyio.run(main)
    assert a1.structured_content == {"total": 2}
    assert a2.is_error and "budget spent: tool_calls used 1 of 1" in a2.content[0].text
    assert b1.structured_content == {"total": 6}
    report_a = json.loads(budget_a.contents[0].text)
    report_b = json.loads(budget_b.contents[0].text)
    assert report_a["used"]["tool_calls"] == 1 and report_a["remaining"]["tool_calls"] == 0
    assert report_b["used"]["tool_calls"] == 1
    assert "session" in report_b["scope"]


def test_a_generated_token_is_printed_on_stderr_and_required():
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DIFFSCOPE_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "http", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        while "bearer token" not in line and line:
            line = proc.stderr.readline().decode()
        token = line.rsplit(": ", 1)[1].strip()
        assert len(token) >= 32
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/mcp"
        assert httpx.post(url, json=INIT, headers=MCP_HEADERS, timeout=10).status_code == 401
        auth = {**MCP_HEADERS, "authorization": f"Bearer {token}"}
        assert httpx.post(url, json=INIT, headers=auth, timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(10)


def test_unsafe_binds_are_refused_with_what_to_do(monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(ValueError, match="needs a bearer token"):
        check_bind("10.1.2.3", 8000, no_token=True)
    with pytest.raises(ValueError, match="--allowed-host"):
        check_bind("0.0.0.0", 8000)
    named = check_bind("0.0.0.0", 8000, ["box.lan"])
    assert named.allowed_hosts == ["box.lan:8000"]
    assert "http://box.lan:8000" in named.allowed_origins
    assert check_bind("10.1.2.3", 8000).allowed_hosts == ["10.1.2.3:8000"]
    monkeypatch.setenv("DIFFSCOPE_TOKEN", "short")
    with pytest.raises(ValueError, match="at least 16"):
        resolve_token()
    monkeypatch.setenv("DIFFSCOPE_TOKEN", TOKEN)
    assert resolve_token() == (TOKEN, False)
    monkeypatch.delenv("DIFFSCOPE_TOKEN")
    generated, fresh = resolve_token()
    assert fresh and len(generated) >= 32
