"""The MCP server shell: `create_server` registers a profile's tools over one ToolContext.

Each tool's MCP input schema comes from its typed arguments (Field bounds and descriptions), its
output schema from its pydantic result model. Calls run in a worker thread under the model lock
(through `ToolDef.run`, which also charges the budget), so the event loop keeps answering. Every
failure becomes an `isError` result with a plain message; the server never crashes on a call.
Logging goes to stderr only: stdout is the stdio transport.
"""

from __future__ import annotations

import base64
import functools
import inspect
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError as MCPToolError
from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from pydantic import ValidationError

from diffscope import __version__
from diffscope.tools import TOOLS, load_tool_modules
from diffscope.tools.base import (
    Budget,
    ProgressHook,
    ToolContext,
    ToolError,
    describe_validation_error,
)
from diffscope.tools.registry import ToolDef, ToolRegistry

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
        self, context: ToolContext, profile: str, tool_defs: list[ToolDef], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.context = context
        self.profile = profile
        self.tool_defs = {tool_def.name: tool_def for tool_def in tool_defs}

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> Any:
        """Run a tool; unknown or invalid arguments come back as an isError result naming them."""
        tool_def = self.tool_defs.get(name)
        if tool_def is not None:
            known = {param.name for param in tool_def.params}
            unknown = sorted(set(arguments) - known)
            if unknown:
                valid = ", ".join(sorted(known)) or "none"
                return error_result(
                    f"unknown argument(s) for {name}: {', '.join(unknown)}; valid arguments: {valid}"
                )
        try:
            return await super().call_tool(name, arguments, context)
        except MCPToolError as exc:
            if isinstance(exc.__cause__, ValidationError):
                message = describe_validation_error(name, exc.__cause__)
                logger.info("tool %s rejected arguments: %s", name, message)
                return error_result(message)
            raise


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


def _progress_hook(mcp_context: Context[Any, Any]) -> ProgressHook:
    """A hook the worker thread calls; it sends an MCP progress notification (if one was asked)."""

    def hook(fraction: float, message: str | None) -> None:
        anyio.from_thread.run(mcp_context.report_progress, fraction, 1.0, message)

    return hook


async def _invoke(
    tool_def: ToolDef, context: ToolContext, args: dict[str, Any], mcp_context: Context[Any, Any]
) -> CallToolResult:
    run = functools.partial(tool_def.run, context, args, progress=_progress_hook(mcp_context))
    try:
        output = await anyio.to_thread.run_sync(run)
    except ToolError as exc:
        logger.info("tool %s: %s", tool_def.name, exc)
        return error_result(str(exc))
    except ValidationError as exc:
        logger.info("tool %s raised a validation error: %s", tool_def.name, exc)
        return error_result(describe_validation_error(tool_def.name, exc, headline="invalid value"))
    except Exception as exc:
        logger.exception("internal error in tool %s", tool_def.name)
        return error_result(f"internal error in {tool_def.name}: {type(exc).__name__}: {exc}")
    structured = output.result.model_dump(mode="json", by_alias=True)
    content: list[ContentBlock] = [TextContent(type="text", text=json.dumps(structured))]
    for image in output.images:
        content.append(
            ImageContent(
                type="image",
                data=base64.b64encode(image.data).decode("ascii"),
                mime_type=image.mime_type,
            )
        )
    return CallToolResult(content=content, structured_content=structured)


def mcp_handler(tool_def: ToolDef, context: ToolContext) -> Callable[..., Any]:
    """An async function whose signature is the tool's arguments (minus ctx) plus the MCP Context.

    MCPServer builds the input schema from that signature and the output schema from the
    `Annotated[CallToolResult, ResultModel]` return annotation.
    """

    async def handler(**kwargs: Any) -> CallToolResult:
        mcp_context = kwargs.pop(CONTEXT_ARG)
        return await _invoke(tool_def, context, kwargs, mcp_context)

    params = [
        *tool_def.params,
        inspect.Parameter(CONTEXT_ARG, inspect.Parameter.KEYWORD_ONLY, annotation=Context),
    ]
    returns = Annotated[CallToolResult, tool_def.result]
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
) -> DiffscopeServer:
    """Build the MCP server exposing `profile`'s tools over one ToolContext.

    `context_or_loader` is a ready ToolContext or a zero-argument callable returning the pair
    (loaded in a background thread when the server starts). `budget` and `organism` (a mapping or
    an object with `public_view()`; served at diffscope://organism without private fields) are
    for the loader form. `registry` defaults to `TOOLS` with every tool module imported.
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

    @asynccontextmanager
    async def lifespan(_: MCPServer[Any]) -> AsyncIterator[dict[str, Any]]:
        context.start_loading()
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
    )
    for tool_def in tool_defs:
        server.add_tool(
            mcp_handler(tool_def, context),
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
    def budget_resource() -> str:
        budgets = context.budgets
        return json.dumps(
            {
                "limits": budgets.limits.model_dump(),
                "used": budgets.usage().model_dump(),
                "remaining": budgets.remaining(),
            },
            indent=2,
        )

    return server
