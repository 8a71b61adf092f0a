"""Drive a real diffscope server (`python -m diffscope.server ORGANISM`) with hostile input, for
the fuzz tests (tests/server/test_fuzz_server.py) and the long run (benchmarks/fuzz_server.py).

- `server_command(organism)` is the stdio command; `http_server(organism)` starts the HTTP one.
- `RawStdio` writes raw bytes to the stdio server and reads the JSON-RPC answers back;
  `raw_post` does the same with one HTTP POST.
- `MALFORMED` is the fixed corpus of malformed messages with the id and code each must get;
  `JSONRPC_ISH` generates more (objects with odd ids, methods and params, and raw bytes).
- `expected_id(raw)` is the id a malformed message's error must carry (null when there is none).
- `SyncClient` is an mcp.Client (stdio or HTTP) in a background loop with synchronous calls that
  give up after `HANG_S` seconds.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import mcp
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import strategies as st
from serverfakes import free_port, wait_for_http

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tools"))

ORGANISM = "perturb_flip_k5"
TOKEN = "fuzz-token-0123456789-abcdefghijklmnopqrstuvwxyz"
HANG_S = 60.0
PROTOCOL = "2025-06-18"
INIT = {
    "jsonrpc": "2.0",
    "id": "init",
    "method": "initialize",
    "params": {
        "protocolVersion": PROTOCOL,
        "capabilities": {},
        "clientInfo": {"name": "fuzz", "version": "1"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
PARSE, INVALID, PARAMS, NO_METHOD = -32700, -32600, -32602, -32601
DEEP = 100_000
DEEP_PARAMS = b'{"jsonrpc":"2.0","id":3,"method":"tools/list","params":' + b'{"a":' * 5000 + b"1}"
DEEP_PARAMS += b"}" * 5000
MALFORMED: list[tuple[bytes, Any, int | None]] = [
    (b"{not json", None, PARSE),
    (b"\xff\xfe\x00 not utf-8", None, PARSE),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"', None, PARSE),
    (b"[" * DEEP + b"]" * DEEP, None, PARSE),
    (
        b'{"jsonrpc":"2.0","id":3,"method":"tools/list","params":'
        + b'{"a":' * 5000
        + b"1"
        + b"}" * 5001,
        None,
        PARSE,
    ),
    (b"\x1f", None, PARSE),  # not JSON whitespace (though str.isspace says so)
    (b"[]", None, INVALID),
    (b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]', None, INVALID),
    (b'"a string"', None, INVALID),
    (b"42", None, INVALID),
    (b"null", None, INVALID),
    (b'{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}', None, INVALID),
    (b'{"jsonrpc":"2.0","id":true,"method":"tools/list"}', None, INVALID),
    (b'{"jsonrpc":"2.0","id":null,"method":"tools/list"}', None, INVALID),
    (b'{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}', None, INVALID),
    (b'{"jsonrpc":"2.0","id":[1],"method":"tools/list"}', None, INVALID),
    (b'{"jsonrpc":"1.0","id":9,"method":"tools/list"}', 9, INVALID),
    (b'{"id":10,"method":"tools/list"}', 10, INVALID),
    (b'{"jsonrpc":"2.0","id":11,"method":42}', 11, INVALID),
    (b'{"jsonrpc":"2.0","id":12,"method":"tools/call","params":5}', 12, PARAMS),
    (b'{"jsonrpc":"2.0","id":13,"method":"tools/call","params":[1,2]}', 13, PARAMS),
    (b'{"jsonrpc":"2.0","id":14}', None, INVALID),
    (b'{"jsonrpc":"2.0","id":15,"result":5}', None, INVALID),
    (b'{"jsonrpc":"2.0","id":16,"method":"no/such/method"}', 16, NO_METHOD),
    (b'{"jsonrpc":"2.0","id":"s-17","method":"x' + b"y" * 10_000 + b'"}', "s-17", NO_METHOD),
    (b'{"jsonrpc":"2.0","id":1180591620717411303424,"method":"nope"}', 2**70, NO_METHOD),
    (b'{"jsonrpc":"2.0","id":18,"method":"tools/call","params":{"name":5}}', 18, None),
]
IDS = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.text(max_size=12),
    st.sampled_from([None, True, False, 1.5, [], {}, [1], {"a": 1}]),
)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(), inner)),
    max_leaves=6,
)
JSONRPC_ISH = st.one_of(
    st.fixed_dictionaries(
        {"id": IDS},
        optional={
            "jsonrpc": st.sampled_from(["2.0", "1.0", 2, None]),
            "method": st.sampled_from(["tools/list", "tools/call", "nope", "ping", 5, None, ""]),
            "params": st.one_of(JSON, st.just({"name": "query_models", "arguments": 5})),
            "result": JSON,
        },
    ).map(lambda obj: json.dumps(obj).encode()),
    st.binary(max_size=200).map(lambda raw: raw.replace(b"\n", b" ").replace(b"\r", b" ")),
    JSON.map(lambda value: json.dumps(value).encode()),
)


def expected_id(raw: bytes) -> Any:
    """The id a JSON-RPC answer to `raw` must carry: a request's own string or integer id, else
    null (a parse error, a bad id, or no method: a malformed response's id is never echoed)."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or "method" not in message:
        return None
    rid = message.get("id")
    valid = isinstance(rid, str) or (isinstance(rid, int) and not isinstance(rid, bool))
    return rid if valid else None


def is_notification(raw: bytes) -> bool:
    """A well-formed notification (no id): the one kind of message that gets no answer."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(message, dict)
        and "id" not in message
        and message.get("jsonrpc") == "2.0"
        and isinstance(message.get("method"), str)
        and isinstance(message.get("params", {}), dict | None)
    )


def is_response(raw: bytes) -> bool:
    """A well-formed response or error from the client (no method): JSON-RPC answers none."""
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    if not isinstance(message, dict) or "method" in message or message.get("jsonrpc") != "2.0":
        return False
    rid = message.get("id")
    if isinstance(rid, bool) or not isinstance(rid, int | str):
        return False
    if "result" in message:
        return isinstance(message["result"], dict)
    error = message.get("error")
    return (
        isinstance(error, dict)
        and isinstance(error.get("code"), int)
        and not isinstance(error.get("code"), bool)
        and isinstance(error.get("message"), str)
    )


def needs_answer(raw: bytes) -> bool:
    """Whether `raw` must get exactly one answer: everything but a blank line (JSON whitespace),
    a well-formed notification and a well-formed response."""
    blank = not raw.strip(b" \t\r\n")
    return not (blank or is_notification(raw) or is_response(raw))


def server_command(organism: str = ORGANISM, *extra: str) -> list[str]:
    """The stdio server of a micro organism (probe corpus capped to keep artifacts quick)."""
    return [
        sys.executable,
        "-m",
        "diffscope.server",
        organism,
        "--size",
        "micro",
        "--windows",
        "16",
        "--log-level",
        "WARNING",
        *extra,
    ]


class RawStdio:
    """A stdio server process spoken to in raw lines (initialised on start)."""

    def __init__(self, command: list[str]) -> None:
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
        self._buffer = b""
        self.send(json.dumps(INIT).encode())
        answer = self.receive(timeout=120)
        assert answer is not None and answer.get("id") == "init", answer
        self.send(json.dumps(INITIALIZED).encode())

    def send(self, raw: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(raw + b"\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """The next JSON line from the server, or None after `timeout` seconds of silence."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def answers_to(self, raw: bytes, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Everything the server answers to `raw`: sends it, then a ping, and collects the
        answers that are not the ping's until the ping's has come (waiting a little longer when
        the answer to `raw` is still missing, since the SDK answers requests concurrently)."""
        sentinel = f"ping-{time.monotonic_ns()}"
        self.send(raw)
        self.send(json.dumps({"jsonrpc": "2.0", "id": sentinel, "method": "ping"}).encode())
        got: list[dict[str, Any]] = []
        pinged = False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (pinged and (got or not needs_answer(raw))):
            wait = (
                deadline - time.monotonic() if not pinged else min(2.0, deadline - time.monotonic())
            )
            answer = self.receive(timeout=max(wait, 0.01))
            if answer is None:
                if pinged:
                    break
                continue
            if answer.get("id") == sentinel:
                pinged = True
            elif "method" not in answer:  # the server's own notifications are no answer
                got.append(answer)
        assert pinged, f"the server stopped answering after {raw[:80]!r}"
        return got

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@contextmanager
def http_server(organism: str = ORGANISM) -> Iterator[str]:
    """The HTTP server of a micro organism (bearer token `TOKEN`); yields its URL."""
    port = free_port()
    command = server_command(organism, "--transport", "http", "--port", str(port))
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "DIFFSCOPE_TOKEN": TOKEN},
    )
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        wait_for_http(url, proc, 120, poll_s=0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(15)


HTTP_HEADERS = {
    "authorization": f"Bearer {TOKEN}",
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
    "mcp-protocol-version": PROTOCOL,
}


def http_session(url: str) -> dict[str, str]:
    """Initialise one raw HTTP session; the headers every later POST of it sends."""
    reply = httpx.post(url, json=INIT, headers=HTTP_HEADERS, timeout=60)
    assert reply.status_code == 200, reply.text
    headers = {**HTTP_HEADERS, "mcp-session-id": reply.headers.get("mcp-session-id", "")}
    httpx.post(url, json=INITIALIZED, headers=headers, timeout=30)
    return headers


def raw_post(url: str, headers: dict[str, str], raw: bytes) -> tuple[int, list[dict[str, Any]]]:
    """POST raw bytes; the status and the JSON-RPC messages in the reply (JSON or SSE)."""
    reply = httpx.post(url, content=raw, headers=headers, timeout=HANG_S)
    if reply.headers.get("content-type", "").startswith("text/event-stream"):
        messages = [
            json.loads(line.removeprefix("data:"))
            for line in reply.text.splitlines()
            if line.startswith("data:") and line.removeprefix("data:").strip()
        ]
    else:
        messages = [reply.json()] if reply.content else []
    return reply.status_code, [m for m in messages if "method" not in m]  # answers only


class SyncClient:
    """An mcp.Client in a background event loop; `call` gives up after HANG_S (TimeoutError)."""

    def __init__(self, portal: BlockingPortal, client: mcp.Client) -> None:
        self.portal = portal
        self.client = client

    def call(self, name: str, arguments: dict[str, Any]) -> Any:
        async def call() -> Any:
            with anyio.fail_after(HANG_S):
                return await self.client.call_tool(name, arguments)

        return self.portal.call(call)


@contextmanager
def stdio_client(organism: str = ORGANISM) -> Iterator[SyncClient]:
    """The mcp client over stdio to a fresh server process of `organism`."""
    command = server_command(organism)
    params = mcp.StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(mcp.Client(params)) as client,  # type: ignore[arg-type]
    ):
        yield SyncClient(portal, client)


@contextmanager
def http_client(url: str) -> Iterator[SyncClient]:
    """The mcp client over streamable HTTP (with the bearer token) to the server at `url`."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    http = httpx2.AsyncClient(
        headers={"authorization": f"Bearer {TOKEN}"}, timeout=httpx2.Timeout(30, read=HANG_S)
    )
    transport = streamable_http_client(url, http_client=http)
    client = mcp.Client(transport)  # type: ignore[arg-type]
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(client) as connected,  # type: ignore[arg-type]
    ):
        yield SyncClient(portal, connected)
