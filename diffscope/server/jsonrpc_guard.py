"""Answer every malformed JSON-RPC message with a JSON-RPC error, on stdio and on HTTP alike.

mcp 2.3's transports let some malformed messages go unanswered: over stdio a line that is not
JSON, is not a JSON-RPC object (a batch, a bare string, missing fields) or carries a bad id gets
no reply at all (the parse failure is handed to the session, which only logs it; a request whose
id is `true`, `null`, a float or an object validates as a *notification* and is dropped), so a
client waits until it times out. Over streamable HTTP the same bad ids get `202 Accepted` and no
answer, and an invalid object gets `-32602` with a null id and the validator's full dump.

`rejection(raw)` decides, for one raw message, the JSON-RPC error it deserves (or None when the
message is well formed and goes on to the SDK unchanged):

- not JSON, not UTF-8, or nested deeper than the parser allows: `-32700` Parse error, id null;
- a batch (MCP has none), a non-object, `jsonrpc` other than "2.0", a method that is not a string,
  an id that is not a string or an integer, or anything else the SDK's message model refuses:
  `-32600` Invalid Request, with the id of a request that has a usable one, else null (a
  malformed response's id is never echoed: it is the server's own numbering);
- a request whose params are not an object: `-32602` Invalid params, with its id.

Messages stay short: the reason names the first problem only. `run_stdio` serves an MCP server
over stdio with the SDK's transport reading lines through this check; `guard_http_app` puts the
same check in front of the streamable HTTP endpoint (inside any auth wrapper the route has).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from io import TextIOWrapper
from typing import Any

import anyio
import pydantic_core
from mcp.server.auth.middleware.bearer_auth import RequireAuthMiddleware
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp.shared.message import SessionMessage
from mcp_types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    PARSE_ERROR,
    ErrorData,
    JSONRPCError,
    jsonrpc_message_adapter,
)
from pydantic import ValidationError

log = logging.getLogger("diffscope.server")

MAX_REASON_CHARS = 160
JSON_HEADERS = [(b"content-type", b"application/json")]
MAX_BODY_BYTES = DEFAULT_MAX_REQUEST_BODY_SIZE


def _error(code: int, message: str, request_id: int | str | None = None) -> JSONRPCError:
    if len(message) > MAX_REASON_CHARS:
        message = message[: MAX_REASON_CHARS - 3] + "..."
    return JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=code, message=message))


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _branch(message: dict[str, Any]) -> str | None:
    """Which JSON-RPC message the object means to be (None: it has no method, result or error)."""
    if "method" in message:
        return "JSONRPCRequest" if "id" in message else "JSONRPCNotification"
    if "result" in message:
        return "JSONRPCResponse"
    if "error" in message:
        return "JSONRPCError"
    return None


def _first_problem(exc: ValidationError, branch: str) -> str:
    """The first error of the SDK's validation of `branch`, without the input it was given."""
    for item in exc.errors(include_url=False, include_input=False):
        loc = item.get("loc", ())
        if loc and loc[0] == branch:
            where = ".".join(str(part) for part in loc[1:])
            message = str(item.get("msg", "invalid"))
            return f"{where}: {message}" if where else message
    return "not a valid JSON-RPC message"


def rejection(raw: bytes | str) -> JSONRPCError | None:
    """The JSON-RPC error a raw message gets, or None when it is well formed (see the docstring)."""
    try:
        message = pydantic_core.from_json(raw)
    except ValueError as exc:
        return _error(PARSE_ERROR, f"Parse error: {exc}")
    if isinstance(message, list):
        return _error(
            INVALID_REQUEST, "Invalid Request: batches are not supported; send one object"
        )
    if not isinstance(message, dict):
        return _error(INVALID_REQUEST, "Invalid Request: a message must be a JSON object")
    has_id = "id" in message
    if has_id and not _valid_id(message["id"]):
        return _error(INVALID_REQUEST, "Invalid Request: id must be a string or an integer")
    # only a request's id is echoed: the id of a (malformed) response is the server's own, and
    # echoing it would look to the client like the answer to its request of that number
    request_id = message.get("id") if "method" in message else None
    if message.get("jsonrpc") != "2.0":
        return _error(INVALID_REQUEST, 'Invalid Request: jsonrpc must be "2.0"', request_id)
    if "method" in message and not isinstance(message["method"], str):
        return _error(INVALID_REQUEST, "Invalid Request: method must be a string", request_id)
    params = message.get("params")
    if "method" in message and has_id and params is not None and not isinstance(params, dict):
        return _error(INVALID_PARAMS, "Invalid params: params must be an object", request_id)
    branch = _branch(message)
    if branch is None:
        reason = "Invalid Request: a request needs a method (a response, a result or an error)"
        return _error(INVALID_REQUEST, reason, request_id)
    try:
        jsonrpc_message_adapter.validate_python(message, by_name=False)
    except ValidationError as exc:
        reason = f"Invalid Request: {_first_problem(exc, branch)}"
        return _error(INVALID_REQUEST, reason, request_id)
    return None


# -- stdio ------------------------------------------------------------------------------------


class _UnownedText(TextIOWrapper):
    """A text layer that never closes the descriptor under it (the wire outlives the reader)."""

    def close(self) -> None:
        with suppress(ValueError):
            self.detach()


@contextmanager
def _wire_stdin() -> Iterator[Any]:
    """The stdin wire as a private descriptor, with fd 0 pointed at the null device meanwhile (as
    the SDK does: model code and children then read EOF instead of protocol bytes)."""
    try:
        private = os.dup(0)
    except OSError:  # no descriptor to divert (an embedded interpreter): read sys.stdin as is
        yield sys.stdin.buffer
        return
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(null, 0)
    finally:
        os.close(null)
    try:
        with os.fdopen(private, "rb", closefd=False) as wire:
            yield wire
    finally:
        os.dup2(private, 0)
        os.close(private)


class _GuardedLines:
    """The stdin lines the SDK's stdio transport reads, minus the malformed ones, which are
    answered on the transport's write stream instead."""

    def __init__(self, wire: Any) -> None:
        self._lines = anyio.wrap_file(_UnownedText(wire, encoding="utf-8", errors="replace"))
        self._write: Any = None
        self._attached = anyio.Event()

    def attach(self, write_stream: Any) -> None:
        self._write = write_stream
        self._attached.set()

    async def __aiter__(self) -> AsyncIterator[str]:
        async for line in self._lines:
            if not line.strip(" \t\r\n"):  # JSON whitespace only: "\x1f" is a bad message
                continue
            error = rejection(line)
            if error is None:
                yield line
                continue
            log.info("answered a malformed message: %s", error.error.message)
            await self._attached.wait()
            await self._write.send(SessionMessage(error))


async def run_stdio(lowlevel_server: Any) -> None:
    """Serve `lowlevel_server` (an MCPServer's `_lowlevel_server`) over stdio, answering malformed
    messages; stdout handling (fd 1 diverted to stderr while serving) stays the SDK's."""
    with _wire_stdin() as wire:
        lines = _GuardedLines(wire)
        async with stdio_server(stdin=lines) as (read_stream, write_stream):  # type: ignore[arg-type]
            lines.attach(write_stream)
            await lowlevel_server.run(
                read_stream, write_stream, lowlevel_server.create_initialization_options()
            )


# -- streamable HTTP --------------------------------------------------------------------------


class JsonRpcGuard:
    """ASGI wrapper of the MCP endpoint: a JSON POST whose body `rejection` refuses is answered
    `400` with the JSON-RPC error; everything else reaches the endpoint with its body intact."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                return
            chunks.append(event.get("body", b""))
            size += len(chunks[-1])
            if not event.get("more_body", False):
                break
            if size > MAX_BODY_BYTES:  # past the SDK's own limit: let it refuse the body (413)
                await self.app(scope, _replay(chunks, receive, more=True), send)
                return
        body = b"".join(chunks)
        error = rejection(body)
        if error is not None:
            log.info("answered a malformed HTTP message: %s", error.error.message)
            payload = error.model_dump_json(by_alias=True, exclude_unset=True).encode()
            await send({"type": "http.response.start", "status": 400, "headers": JSON_HEADERS})
            await send({"type": "http.response.body", "body": payload})
            return
        await self.app(scope, _replay([body], receive, more=False), send)


def _replay(chunks: list[bytes], receive: Any, *, more: bool) -> Any:
    """An ASGI receive that gives back the body chunks already read, then reads on."""
    pending = list(chunks)

    async def replay() -> Any:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": more or bool(pending)}
        return await receive()

    return replay


def _is_json(scope: Any) -> bool:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-type":
            return bool(value.split(b";")[0].strip().lower() == b"application/json")
    return False


def guard_http_app(app: Any, path: str) -> Any:
    """Put `JsonRpcGuard` in front of the streamable HTTP endpoint at `path` of the Starlette app
    the SDK built (inside the route's auth wrapper, when it has one); returns the app."""
    for route in getattr(app, "routes", ()):
        if getattr(route, "path", None) != path:
            continue
        holder = route.app if isinstance(route.app, RequireAuthMiddleware) else route
        holder.app = JsonRpcGuard(holder.app)
        return app
    raise ValueError(f"the HTTP app has no route {path!r} to guard")
