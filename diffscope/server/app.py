"""The MCP server shell: `create_server` registers a profile's tools over one ToolContext.

Each tool's MCP input schema comes from its typed arguments (Field bounds and descriptions), its
output schema from its pydantic result model. Calls run in a worker thread under the model lock
(through `ToolDef.run`, which also charges the budget), so the event loop keeps answering. Every
failure becomes an `isError` result with a plain message; the server never crashes on a call.
A call cancelled by the client returns at once and its thread stops at its next batch or token
(`progress.cancellable`); each call is charged to its client session's budget (`session_key`).
With `prepare_in_background` a call whose artifact is not ready answers `Preparing` within
seconds (`diffscope.server.prepare`), and the job tools and `diffscope://status` are served.
Logging goes to stderr only: stdout is the stdio transport.
"""

from __future__ import annotations

import base64
import functools
import inspect
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError as MCPToolError
from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, RootModel, ValidationError
from starlette.applications import Starlette

from diffscope import __version__
from diffscope import progress as pg
from diffscope.server import jsonrpc_guard
from diffscope.server.jobs import (
    JOB_TOOLS,
    PREPARER_KEY,
    STATUS_URI,
    job_tool_defs,
    serves_jobs,
)
from diffscope.server.prepare import DEFAULT_WAIT_S, Preparer, Preparing
from diffscope.tools import TOOLS, load_tool_modules
from diffscope.tools.base import (
    Budget,
    Budgets,
    ProgressHook,
    ToolContext,
    ToolError,
    describe_validation_error,
)
from diffscope.tools.guards import name_list, shorten
from diffscope.tools.registry import ToolDef, ToolRegistry, warning_lines

logger = logging.getLogger("diffscope.server")

CONTEXT_ARG = "mcp_context"
ORGANISM_URI = "diffscope://organism"
BUDGET_URI = "diffscope://budget"
PRIVATE_KEYS = frozenset({"ground_truth", "notes", "zoo", "key_facts", "description"})

DEFAULT_INSTRUCTIONS = (
    "diffscope compares a base language model with its fine-tuned version. Use the tools to find "
    "out what the fine-tune changed, then state your hypothesis. Every tool call, and every prompt "
    "sent to a model, counts against a budget (see the diffscope://budget resource). A tool that "
    "fails answers with a message saying what to fix; fix it and call again. Public facts about "
    "the organism are in the diffscope://organism resource."
)


class DiffscopeServer(MCPServer):
    """An MCPServer that carries its ToolContext and profile and reports bad arguments plainly."""

    def __init__(
        self,
        context: ToolContext,
        profile: str,
        tool_defs: list[ToolDef],
        *,
        preparer: Preparer | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.context = context
        self.profile = profile
        self.tool_defs = {tool_def.name: tool_def for tool_def in tool_defs}
        self.preparer = preparer

    async def read_resource(self, uri: Any, context: Context[Any, Any] | None = None) -> Any:
        """Resources; the budget resource reports the calling session's own budget."""
        if str(uri) == BUDGET_URI and context is not None:
            budgets = self.context.session_budgets(session_key(context))
            text = json.dumps(budget_report(budgets), indent=2)
            return [ReadResourceContents(content=text, mime_type="application/json")]
        return await super().read_resource(uri, context)

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> Any:
        """Run a tool; unknown or invalid arguments come back as an isError result naming them."""
        tool_def = self.tool_defs.get(name)
        if tool_def is None and self._tool_manager.get_tool(name) is None:
            # names shortened: an error never repeats a huge input in full
            valid_tools = ", ".join(self.tool_defs)
            return error_result(f"unknown tool '{shorten(name)}'; this server has: {valid_tools}")
        known = (
            {param.name for param in tool_def.params} if tool_def is not None else set(arguments)
        )
        unknown = sorted(set(arguments) - known)
        if unknown:
            valid = ", ".join(sorted(known)) or "none"
            return error_result(
                f"unknown argument(s) for {name}: {name_list(unknown)}; valid arguments: {valid}"
            )
        try:
            return await super().call_tool(name, arguments, context)
        except MCPToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                message = describe_validation_error(name, exc.__cause__)
                logger.info("tool %s rejected arguments: %s", name, message)
                return error_result(message)
            raise

    async def run_stdio_async(self) -> None:
        """Serve over stdio, answering malformed JSON-RPC with errors (see jsonrpc_guard)."""
        await jsonrpc_guard.run_stdio(self._lowlevel_server)

    def streamable_http_app(self, **kwargs: Any) -> Starlette:
        """The SDK's streamable HTTP app with malformed JSON-RPC answered (see jsonrpc_guard)."""
        app = super().streamable_http_app(**kwargs)
        return jsonrpc_guard.guard_http_app(app, kwargs.get("streamable_http_path", "/mcp"))


def session_key(mcp_context: Context[Any, Any]) -> str | None:
    """The client session a request belongs to: its `Mcp-Session-Id` on streamable HTTP (the id
    the server issued at initialize), None on stdio and in process (one session per server)."""
    try:
        headers = mcp_context.headers
    except (ValueError, AttributeError):  # outside a request
        return None
    return headers.get("mcp-session-id") if headers else None


def budget_report(budgets: Budgets) -> dict[str, Any]:
    """What the budget resource shows for one session."""
    return {
        "scope": "this client session (each MCP session has its own budget)",
        "limits": budgets.limits.model_dump(),
        "used": budgets.usage().model_dump(),
        "remaining": budgets.remaining(),
    }


def or_preparing(result: type[BaseModel]) -> type[BaseModel]:
    """The output model of a tool that may also answer `Preparing` (its schema: anyOf both).

    MCP requires an output schema to be `"type": "object"` at its top (clients negotiating
    2025-06-18 reject `tools/list` otherwise); both alternatives are objects, so it is said
    explicitly beside the `anyOf`."""
    union = result | Preparing

    class OrPreparing(RootModel[union]):  # type: ignore[valid-type]
        model_config = ConfigDict(json_schema_extra={"type": "object"})

    OrPreparing.__name__ = OrPreparing.__qualname__ = f"{result.__name__}OrPreparing"
    return OrPreparing


def error_result(message: str) -> CallToolResult:
    """An isError tool result carrying one plain text message."""
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


def public_info(organism: Any) -> dict[str, Any]:
    """What an investigator may know about an organism: its public view minus anything private."""
    if organism is None:
        return {}
    if hasattr(organism, "investigator_view"):
        view = organism.investigator_view()
    elif hasattr(organism, "public_view"):
        view = organism.public_view()
    else:
        view = dict(organism)
    return {key: value for key, value in view.items() if key not in PRIVATE_KEYS}


def _progress_hook(mcp_context: Context[Any, Any], cancel: threading.Event) -> ProgressHook:
    """A hook the worker thread calls; it sends an MCP progress notification (if one was asked),
    and none once the request was cancelled."""

    def hook(fraction: float, message: str | None) -> None:
        if not cancel.is_set():
            anyio.from_thread.run(mcp_context.report_progress, fraction, 1.0, message)

    return hook


async def _preparing(
    preparer: Preparer, name: str, args: dict[str, Any], wait_s: float
) -> Preparing | None:
    """None once what the call needs is ready (waiting up to `wait_s`), else the answer to give."""
    deadline = anyio.current_time() + wait_s
    while True:
        jobs = preparer.missing(name, args)
        if not jobs:
            return None
        if anyio.current_time() >= deadline:
            return preparer.preparing(name, jobs)
        await anyio.sleep(0.05)


BUSY = object()
"""What the worker returns when the models stayed busy past the wait (background work)."""


def _run_in_thread(
    tool_def: ToolDef,
    context: ToolContext,
    args: dict[str, Any],
    budgets: Budgets,
    progress: ProgressHook,
    cancel: threading.Event,
    lock_wait_s: float | None = None,
) -> Any:
    with pg.cancellable(cancel), context.using_budgets(budgets):
        if tool_def.name in JOB_TOOLS:  # they read the preparer only: no lock, no charge
            return tool_def._normalise(tool_def.fn(context, **args))
        if lock_wait_s is None:
            return tool_def.run(context, args, progress=progress)
        # background preparation hands the models over between batches; if they stay busy
        # past the wait (a long batch, another session's call), answer "preparing" instead
        if not context.lock.acquire(timeout=max(0.0, lock_wait_s)):
            return BUSY
        try:
            return tool_def.run(context, args, progress=progress)
        finally:
            context.lock.release()


async def _invoke(
    tool_def: ToolDef, context: ToolContext, args: dict[str, Any], mcp_context: Context[Any, Any]
) -> CallToolResult:
    preparer = context.cache.get(PREPARER_KEY)
    lock_wait_s: float | None = None
    if isinstance(preparer, Preparer) and tool_def.name not in JOB_TOOLS:
        began = anyio.current_time()
        waiting = await _preparing(preparer, tool_def.name, args, preparer.wait_s)
        if waiting is not None:
            logger.info("tool %s: preparing %s", tool_def.name, waiting.waiting_for)
            answer = waiting.model_dump(mode="json")
            return CallToolResult(
                content=[TextContent(type="text", text=json.dumps(answer))],
                structured_content=answer,
            )
        lock_wait_s = preparer.wait_s - (anyio.current_time() - began)
    cancel = threading.Event()
    budgets = context.session_budgets(session_key(mcp_context))
    progress = _progress_hook(mcp_context, cancel)
    run = functools.partial(
        _run_in_thread, tool_def, context, args, budgets, progress, cancel, lock_wait_s
    )
    started = anyio.current_time()
    try:
        # abandon_on_cancel: a cancelled request returns at once; the flag stops the thread at
        # its next batch or token (progress.checkpoint), so its work does not run on
        output = await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        cancel.set()
        took = anyio.current_time() - started
        logger.info("tool %s cancelled by the client after %.1f s; stopping", tool_def.name, took)
        raise
    except pg.Cancelled:
        return error_result(f"{tool_def.name} was cancelled")
    except ToolError as exc:
        logger.info("tool %s: %s", tool_def.name, exc)
        return error_result(str(exc))
    except ValidationError as exc:
        logger.info("tool %s raised a validation error: %s", tool_def.name, exc)
        return error_result(describe_validation_error(tool_def.name, exc, headline="invalid value"))
    except Exception as exc:
        logger.exception("internal error in tool %s", tool_def.name)
        return error_result(f"internal error in {tool_def.name}: {type(exc).__name__}: {exc}")
    if output is BUSY and isinstance(preparer, Preparer):
        answer = preparer.busy(tool_def.name).model_dump(mode="json")
        logger.info("tool %s: the models are busy; answered preparing", tool_def.name)
        return CallToolResult(
            content=[TextContent(type="text", text=json.dumps(answer))], structured_content=answer
        )
    structured = output.result.model_dump(mode="json", by_alias=True)
    content: list[ContentBlock] = [TextContent(type="text", text=json.dumps(structured))]
    content.extend(TextContent(type="text", text=line) for line in warning_lines(output.warnings))
    for image in output.images:
        content.append(
            ImageContent(
                type="image",
                data=base64.b64encode(image.data).decode("ascii"),
                mime_type=image.mime_type,
            )
        )
    return CallToolResult(content=content, structured_content=structured)


def mcp_handler(
    tool_def: ToolDef, context: ToolContext, *, preparing: bool = False
) -> Callable[..., Any]:
    """An async function whose signature is the tool's arguments (minus ctx) plus the MCP Context.

    MCPServer builds the input schema from that signature and the output schema from the
    `Annotated[CallToolResult, ResultModel]` return annotation (the result model or `Preparing`
    when the tool may answer that).
    """

    async def handler(**kwargs: Any) -> CallToolResult:
        mcp_context = kwargs.pop(CONTEXT_ARG)
        return await _invoke(tool_def, context, kwargs, mcp_context)

    params = [
        *tool_def.params,
        inspect.Parameter(CONTEXT_ARG, inspect.Parameter.KEYWORD_ONLY, annotation=Context),
    ]
    output = or_preparing(tool_def.result) if preparing else tool_def.result
    returns = Annotated[CallToolResult, output]
    handler.__signature__ = inspect.Signature(params, return_annotation=returns)  # type: ignore[attr-defined]
    handler.__annotations__ = {param.name: param.annotation for param in params}
    handler.__annotations__["return"] = returns
    handler.__name__ = handler.__qualname__ = tool_def.name
    handler.__doc__ = tool_def.description
    return handler


def create_server(
    context_or_loader: ToolContext | Callable[[], Any],
    profile: str = "method",
    *,
    registry: ToolRegistry | None = None,
    name: str = "diffscope",
    instructions: str | None = None,
    budget: Budget | None = None,
    organism: Any = None,
    log_level: str = "INFO",
    prepare_in_background: bool = False,
    ready_wait_s: float = DEFAULT_WAIT_S,
) -> DiffscopeServer:
    """Build the MCP server exposing `profile`'s tools over one ToolContext.

    `context_or_loader` is a ready ToolContext or a zero-argument callable returning the pair
    (loaded in a background thread when the server starts). `budget` and `organism` (a mapping or
    an object with `public_view()`; served at diffscope://organism without private fields) are
    for the loader form. `registry` defaults to `TOOLS` with every tool module imported.

    With `prepare_in_background` the server computes the artifacts its tools need from the
    start (`diffscope.server.prepare`); a call whose artifact is not ready within
    `ready_wait_s` seconds answers `Preparing` instead of blocking, and the job tools and the
    diffscope://status resource are served. Without it a call computes what it needs itself.
    """
    if isinstance(context_or_loader, ToolContext):
        if budget is not None:
            raise ValueError("give the budget to the ToolContext, not to create_server")
        context = context_or_loader
        if organism is not None:
            context.public_info = public_info(organism)
    elif callable(context_or_loader):
        context = ToolContext(context_or_loader, budget=budget, public_info=public_info(organism))
    else:
        raise TypeError("create_server needs a ToolContext or a loader callable")
    if registry is None:
        load_tool_modules()
        registry = TOOLS
    tool_defs = registry.tools_for_profile(profile)
    if not tool_defs:
        raise ValueError(f"profile {profile!r} has no tools in this registry")
    preparer: Preparer | None = None
    if prepare_in_background:
        names = [tool_def.name for tool_def in tool_defs]
        preparer = Preparer(context, names, wait_s=ready_wait_s)
        context.cache[PREPARER_KEY] = preparer
        if serves_jobs(names):
            tool_defs = [*tool_defs, *job_tool_defs()]

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        context.start_loading()
        if preparer is not None:
            preparer.start()
        yield {}

    server = DiffscopeServer(
        context,
        profile,
        tool_defs,
        name=name,
        instructions=DEFAULT_INSTRUCTIONS if instructions is None else instructions,
        version=__version__,
        lifespan=lifespan,
        log_level=log_level,
        preparer=preparer,
    )
    for tool_def in tool_defs:
        server.add_tool(
            mcp_handler(
                tool_def, context, preparing=preparer is not None and tool_def.name not in JOB_TOOLS
            ),
            name=tool_def.name,
            title=tool_def.title,
            description=tool_def.description,
            annotations=ToolAnnotations(
                title=tool_def.title,
                read_only_hint=True,
                destructive_hint=False,
                idempotent_hint=tool_def.idempotent,
                open_world_hint=False,
            ),
            structured_output=True,
        )

    @server.resource(
        ORGANISM_URI,
        name="organism",
        description="Public facts about the base/fine-tune pair (never what the fine-tune changed)",
        mime_type="application/json",
    )
    def organism_resource() -> str:
        return json.dumps(public_info(context.public_info), indent=2, default=str)

    @server.resource(
        BUDGET_URI,
        name="budget",
        description="Limits, usage and what is left for this session",
        mime_type="application/json",
    )
    def budget_resource() -> str:  # read without a request context (DiffscopeServer.read_resource)
        return json.dumps(budget_report(context.session_budgets(None)), indent=2)

    if preparer is not None:
        status = preparer

        @server.resource(
            STATUS_URI,
            name="status",
            description="Background preparation: the pair, each job's progress and time left, "
            "and the tools that answer at once now",
            mime_type="application/json",
        )
        def status_resource() -> str:
            return json.dumps(status.status(), indent=2)

    return server
