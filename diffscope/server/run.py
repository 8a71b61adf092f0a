"""Serve a built server over stdio (for Claude Desktop and agents) or streamable HTTP.

Logs go to stderr only: on stdio, stdout is the protocol wire (while serving, mcp also points
file descriptor 1 at stderr, so stray prints from model code cannot corrupt it).
"""

from __future__ import annotations

import functools
import logging
import sys
from typing import Literal

import anyio
from mcp.server.mcpserver import MCPServer

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
