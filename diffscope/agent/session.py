"""A thin async client for a diffscope MCP server, speaking the provider layer's vocabulary.

`ToolSession.connect(target)` opens an MCP session to an in-process `MCPServer` object or, for a
command (a list of strings) or `mcp.StdioServerParameters`, to a server spawned over stdio. The
session lists the server's tools as provider `ToolSpec`s and calls them, returning a `ToolResult`:
the text the model sees (structured content as compact JSON, else the text blocks; images are
noted as "[image omitted]", since the providers here are text-only), the error flag and the
structured content.

    async with ToolSession.connect(server) as session:
        specs = await session.list_tools()
        result = await session.call_tool("kl_probe", {"prompts": ["hi"]})
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import anyio
import mcp
from mcp.server.mcpserver import MCPServer

from diffscope.llm import ToolSpec

BUDGET_URI = "diffscope://budget"
IMAGE_NOTE = "[image omitted]"
DEFAULT_TIMEOUT_S = 120.0
PREPARING_MAX_WAIT_S = 900.0
"""How long one call keeps waiting for a server that answers "preparing"."""


@dataclass(frozen=True)
class ToolResult:
    """One tool's answer: text for the model, the error flag, structured content, image count."""

    text: str
    is_error: bool = False
    structured: dict[str, Any] | None = None
    images: int = 0


@runtime_checkable
class ToolSource(Protocol):
    """What the agent loop needs from a tool server (`ToolSession`, or a fake in tests)."""

    async def list_tools(self) -> list[ToolSpec]:
        """The tools the server offers."""
        ...

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Call one tool; failures come back as `ToolResult(is_error=True)`."""
        ...

    async def budget(self) -> dict[str, Any] | None:
        """The server's budget report (limits, used, remaining), or None if it has none."""
        ...


WARNING_PREFIX = "warning: "


def preparing_pause(structured: Any, waited_s: float) -> float | None:
    """Seconds to wait before calling again when a tool answered the server's "preparing"
    (its `retry_after_s`, within 0.5..30 s); None for any other answer or once `waited_s`
    reaches PREPARING_MAX_WAIT_S (the "preparing" answer is then shown as it is)."""
    if not isinstance(structured, dict) or structured.get("status") != "preparing":
        return None
    if waited_s >= PREPARING_MAX_WAIT_S:
        return None
    try:
        suggested = float(structured.get("retry_after_s", 5.0))
    except (TypeError, ValueError):
        suggested = 5.0
    return min(30.0, max(0.5, suggested))


def to_json(value: Any) -> str:
    """Compact JSON, the way structured results are shown to the model."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def result_text(result: Any) -> ToolResult:
    """Turn an MCP `CallToolResult` into a `ToolResult`.

    Successful structured content is shown as compact JSON, followed by any "warning: ..." text
    blocks; otherwise the text blocks are joined (an error's message). Each image block adds one
    "[image omitted]" line.
    """
    structured = result.structured_content
    texts: list[str] = []
    images = 0
    for block in result.content or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            texts.append(block.text)
        elif kind == "image":
            images += 1
        elif kind == "resource":
            resource = getattr(block, "resource", None)
            texts.append(getattr(resource, "text", None) or f"[{kind} omitted]")
        else:
            texts.append(f"[{kind or 'content'} omitted]")
    is_error = bool(result.is_error)
    shown = [to_json(structured)] if structured is not None and not is_error else texts
    if shown is not texts:  # the server's warning lines (a damaged cache entry rebuilt) stay
        shown += [text for text in texts if text.startswith(WARNING_PREFIX)]
    body = "\n".join([part for part in shown if part] + [IMAGE_NOTE] * images)
    return ToolResult(
        text=body,
        is_error=is_error,
        structured=structured if isinstance(structured, dict) else None,
        images=images,
    )


def tool_spec(tool: Any) -> ToolSpec:
    """A provider `ToolSpec` from an MCP `Tool` (name, description, input schema)."""
    schema = dict(tool.input_schema or {})
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return ToolSpec(name=tool.name, description=tool.description or "", parameters=schema)


def stdio_parameters(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    inherit_env: bool = True,
) -> mcp.StdioServerParameters:
    """Parameters to spawn `command` (program and arguments) as a stdio MCP server.

    The child gets this process's environment (unless `inherit_env=False`) updated with `env`.
    """
    if not command:
        raise ValueError("a stdio server needs a command")
    merged = {**(os.environ if inherit_env else {}), **(env or {})}
    return mcp.StdioServerParameters(
        command=str(command[0]),
        args=[str(arg) for arg in command[1:]],
        env=dict(merged),
        cwd=None if cwd is None else str(cwd),
    )


@dataclass
class ToolSession:
    """An open MCP client session to one diffscope server; build it with `connect`."""

    client: mcp.Client
    timeout_s: float | None = DEFAULT_TIMEOUT_S
    _specs: list[ToolSpec] | None = field(default=None, repr=False)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        target: MCPServer | mcp.StdioServerParameters | Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> AsyncIterator[ToolSession]:
        """Connect to an in-process server, stdio parameters, or a command to spawn over stdio.

        `env` and `cwd` apply to a spawned command only. `timeout_s` bounds each request.
        """
        if isinstance(target, MCPServer | mcp.StdioServerParameters):
            if env is not None or cwd is not None:
                if isinstance(target, MCPServer):
                    raise ValueError("env and cwd apply to a spawned server, not an in-process one")
                raise ValueError("put env and cwd in the StdioServerParameters")
            server: Any = target
        elif isinstance(target, str | bytes):
            raise TypeError("give a stdio command as a list of strings, not one string")
        else:
            server = stdio_parameters(list(target), env=env, cwd=cwd)
        async with mcp.Client(server, read_timeout_seconds=timeout_s) as client:
            yield cls(client, timeout_s)

    @property
    def instructions(self) -> str | None:
        """The server's instructions text, if it sent any."""
        return self.client.instructions

    async def list_tools(self) -> list[ToolSpec]:
        """Every tool the server offers, as provider `ToolSpec`s (all pages, cached)."""
        if self._specs is None:
            specs: list[ToolSpec] = []
            cursor: str | None = None
            while True:
                page = await self.client.list_tools(cursor=cursor)
                specs.extend(tool_spec(tool) for tool in page.tools)
                cursor = page.next_cursor
                if not cursor:
                    break
            self._specs = specs
        return list(self._specs)

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Call a tool; a protocol error (e.g. a timeout) comes back as an error result. A server
        still preparing what the tool needs answers "preparing" (nothing charged): the call is
        repeated after the pause it suggests, for up to PREPARING_MAX_WAIT_S."""
        waited = 0.0
        while True:
            try:
                result = await self.client.call_tool(name, dict(arguments))
            except mcp.MCPError as exc:
                return ToolResult(text=f"the call to {name} failed: {exc}", is_error=True)
            pause = preparing_pause(result.structured_content, waited)
            if pause is None:
                return result_text(result)
            await anyio.sleep(pause)
            waited += pause

    async def budget(self) -> dict[str, Any] | None:
        """The server's `diffscope://budget` report, or None when the server has none."""
        try:
            answer = await self.client.read_resource(BUDGET_URI)
        except mcp.MCPError:
            return None
        for content in answer.contents:
            text = getattr(content, "text", None)
            if text:
                try:
                    value = json.loads(text)
                except json.JSONDecodeError:
                    return None
                return value if isinstance(value, dict) else None
        return None
