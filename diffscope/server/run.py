"""Serve a pair's tools: build the server for a `PairSpec`, serve it over stdio or streamable HTTP.

`build_server(spec, profile)` is the one way a pair gets served: the workspace (pair, probe corpus,
artifacts) opens in the background when the server starts, and the server's organism resource is
the investigator's view of the spec. `stdio_command(spec, profile)` is the command that serves the
same spec in a subprocess (`python -m diffscope.server ...`), so in-process and stdio servers give
the same answers. `serve(...)` builds and runs (for `diffscope serve` and `python -m
diffscope.server`). Over streamable HTTP a bearer token is required and Host/Origin
headers are checked (`diffscope.server.auth`).

Logs go to stderr only: on stdio, stdout is the protocol wire (while serving, mcp also points
file descriptor 1 at stderr, so stray prints from model code cannot corrupt it).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

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
    token: str | None = None,
    allowed_hosts: Sequence[str] = (),
    no_token: bool = False,
) -> None:
    """Serve until the client disconnects (stdio) or the process is interrupted (http).

    The HTTP endpoint is `http://HOST:PORT/mcp` (streamable HTTP). It requires a bearer token:
    `token`, else `$DIFFSCOPE_TOKEN`, else one generated and printed on stderr; `no_token`
    (loopback only) serves without one. Host/Origin headers are checked for loopback, or for
    `allowed_hosts` (default: `host`) elsewhere (`diffscope.server.auth`).
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; choose one of {', '.join(TRANSPORTS)}")
    setup_logging(log_level)
    log = logging.getLogger("diffscope.server")
    if transport == "stdio":
        log.info("serving %s over stdio", server.name)
        anyio.run(server.run_stdio_async)
        return
    app = http_app(
        server,
        host,
        port,
        path=path,
        token=token,
        allowed_hosts=allowed_hosts,
        no_token=no_token,
    )
    context = getattr(server, "context", None)
    if context is not None:
        context.start_loading()  # stdout is not the wire here: load before the first session
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level.lower())
    try:
        anyio.run(uvicorn.Server(config).serve)
    except KeyboardInterrupt:
        log.info("stopped")


def http_app(
    server: MCPServer,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    path: str = "/mcp",
    token: str | None = None,
    allowed_hosts: Sequence[str] = (),
    no_token: bool = False,
) -> Any:
    """The streamable HTTP app of `server` behind the bearer-token gate (see `run_server`);
    ValueError for an unsafe combination (no token or no named host off loopback)."""
    from diffscope.server.auth import BearerGate, check_bind, resolve_token

    log = logging.getLogger("diffscope.server")
    security = check_bind(host, port, allowed_hosts, no_token=no_token)
    app = server.streamable_http_app(
        streamable_http_path=path, transport_security=security, host=host
    )
    url = f"http://{host}:{port}{path}"
    if no_token:
        log.warning("serving %s at %s WITHOUT a token (loopback only)", server.name, url)
        return app
    secret, generated = resolve_token(token)
    log.info("serving %s at %s (bearer token required)", server.name, url)
    if generated:
        # stderr, not the log level: whoever started the server needs it to connect
        print(
            f"diffscope: bearer token for {url}: {secret}\n"
            f"  (send 'Authorization: Bearer {secret}'; set $DIFFSCOPE_TOKEN to choose it)",
            file=sys.stderr,
            flush=True,
        )
    return BearerGate(app, secret)


def build_server(
    spec: PairSpec,
    profile: str = "method",
    *,
    max_tool_calls: int | None = None,
    max_model_queries: int | None = None,
    log_level: str = "INFO",
    prepare_in_background: bool = True,
) -> DiffscopeServer:
    """The server of `profile`'s tools over the workspace `spec` opens (in the background).

    With `prepare_in_background` (the default) it computes the artifacts its tools need from
    the start and answers "preparing" for those not ready yet (`diffscope.server.prepare`);
    artifacts already cached (`diffscope prepare`) are ready at once."""
    from diffscope.server.app import create_server
    from diffscope.tools.base import Budget
    from diffscope.workspace import investigator_view, open_workspace

    return create_server(
        lambda: open_workspace(spec),
        profile,
        budget=Budget(tool_calls=max_tool_calls, model_queries=max_model_queries),
        organism=investigator_view(spec),
        log_level=log_level,
        prepare_in_background=prepare_in_background,
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
    prepare_in_background: bool = True,
    allowed_hosts: Sequence[str] = (),
    no_token: bool = False,
) -> None:
    """Build the server for `spec` and serve it until the client goes (stdio) or Ctrl-C (http).

    Over http a bearer token is required (see `run_server`); `allowed_hosts` are the host names
    whose Host/Origin headers are accepted off loopback.

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
        prepare_in_background=prepare_in_background,
    )
    if transport == "http":  # an unsafe bind fails here, before anything loads
        from diffscope.server.auth import check_bind

        check_bind(host, port, allowed_hosts, no_token=no_token)
    run_server(
        server,
        transport,
        host=host,
        port=port,
        log_level=log_level,
        allowed_hosts=allowed_hosts,
        no_token=no_token,
    )


def add_serving_options(parser: Any) -> None:
    """The options `diffscope serve` and `python -m diffscope.server` share beyond the pair:
    background preparation and the HTTP sharing settings."""
    parser.add_argument(
        "--no-prepare",
        action="store_true",
        help="do not compute missing artifacts in the background at start; a tool then computes "
        "what it needs during its call (may take longer than a client waits)",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="with http off loopback: a host name (or address) clients use to reach the server; "
        "Host and Origin headers must name one of these (repeatable; default: --host)",
    )
    parser.add_argument(
        "--no-token",
        action="store_true",
        help="with http on loopback only: serve without the bearer token (by default one is "
        "required: $DIFFSCOPE_TOKEN, or one generated and printed at start)",
    )
