"""Serve a pair's tools: build the server for a `PairSpec`, serve it over stdio or streamable HTTP.

`build_server(spec, profile)` is the one way a pair gets served: the workspace (pair, probe corpus,
artifacts) opens in the background when the server starts, and the server's organism resource is
the investigator's view of the spec. `stdio_command(spec, profile)` is the command that serves the
same spec in a subprocess (`python -m diffscope.server ...`), so in-process and stdio servers give
the same answers. `serve(...)` builds and runs (for `diffscope serve` and `python -m
diffscope.server`).

Logs go to stderr only: on stdio, stdout is the protocol wire (while serving, mcp also points
file descriptor 1 at stderr, so stray prints from model code cannot corrupt it).
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import anyio
from mcp.server.mcpserver import MCPServer

if TYPE_CHECKING:
    from diffscope.server.app import DiffscopeServer
    from diffscope.workspace import PairSpec

Transport = Literal["stdio", "http"]
TRANSPORTS: tuple[str, ...] = ("stdio", "http")


def setup_logging(level: str = "INFO") -> None:
    """Send diffscope's logs to stderr at `level` (never to stdout); idempotent."""
    logger = logging.getLogger("diffscope")
    logger.setLevel(level.upper())
    if not any(getattr(handler, "_diffscope", False) for handler in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        handler._diffscope = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False


def run_server(
    server: MCPServer,
    transport: Transport = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    path: str = "/mcp",
    log_level: str = "INFO",
) -> None:
    """Serve until the client disconnects (stdio) or the process is interrupted (http).

    The HTTP endpoint is `http://HOST:PORT/mcp` (streamable HTTP); on localhost mcp enables DNS
    rebinding protection.
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; choose one of {', '.join(TRANSPORTS)}")
    setup_logging(log_level)
    log = logging.getLogger("diffscope.server")
    if transport == "stdio":
        log.info("serving %s over stdio", server.name)
        anyio.run(server.run_stdio_async)
        return
    log.info("serving %s at http://%s:%d%s", server.name, host, port, path)
    context = getattr(server, "context", None)
    if context is not None:
        context.start_loading()  # stdout is not the wire here: load before the first session
    serve = functools.partial(
        server.run_streamable_http_async, host=host, port=port, streamable_http_path=path
    )
    try:
        anyio.run(serve)
    except KeyboardInterrupt:
        log.info("stopped")


def build_server(
    spec: PairSpec,
    profile: str = "method",
    *,
    max_tool_calls: int | None = None,
    max_model_queries: int | None = None,
    log_level: str = "INFO",
) -> DiffscopeServer:
    """The server of `profile`'s tools over the workspace `spec` opens (in the background)."""
    from diffscope.server.app import create_server
    from diffscope.tools.base import Budget
    from diffscope.workspace import investigator_view, open_workspace

    return create_server(
        lambda: open_workspace(spec),
        profile,
        budget=Budget(tool_calls=max_tool_calls, model_queries=max_model_queries),
        organism=investigator_view(spec),
        log_level=log_level,
    )


def stdio_command(
    spec: PairSpec,
    profile: str = "method",
    *,
    max_tool_calls: int | None = None,
    max_model_queries: int | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command serving `build_server(spec, profile, ...)` over stdio in a subprocess."""
    command = [sys.executable, "-m", "diffscope.server", *spec.server_args(), "--profile", profile]
    if max_tool_calls is not None:
        command += ["--max-tool-calls", str(max_tool_calls)]
    if max_model_queries is not None:
        command += ["--max-model-queries", str(max_model_queries)]
    return [*command, *extra]


def check_profile(profile: str) -> set[str]:
    """The tool names `profile` asks for; ValueError naming the valid profiles if it is unknown."""
    from diffscope.tools import TOOLS, load_tool_modules

    load_tool_modules()
    return TOOLS.profile_names(profile)


def serve(
    spec: PairSpec,
    profile: str = "method",
    transport: Transport = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    max_tool_calls: int | None = None,
    max_model_queries: int | None = None,
    log_level: str = "INFO",
) -> None:
    """Build the server for `spec` and serve it until the client goes (stdio) or Ctrl-C (http).

    A pair that cannot load (an unbuilt zoo entry, a missing path, a folder without a model) is a
    ValueError here, before the server announces itself."""
    from diffscope.workspace import check_sources

    check_sources(spec)
    server = build_server(
        spec,
        profile,
        max_tool_calls=max_tool_calls,
        max_model_queries=max_model_queries,
        log_level=log_level,
    )
    run_server(server, transport, host=host, port=port, log_level=log_level)
