"""Typed tool functions over a loaded model pair, their registry, budgets and profiles.

Tool modules in this package register into `TOOLS` with `@tool(...)` when imported;
`load_tool_modules()` imports every one of them (the server calls it before building a profile).
"""

from __future__ import annotations

import importlib
import pkgutil

from diffscope.tools.base import (
    Budget,
    Budgets,
    Charge,
    Image,
    ToolContext,
    ToolError,
    Usage,
    describe_validation_error,
)
from diffscope.tools.registry import (
    METHOD_TAGS,
    PROFILES,
    QUERY_TOOL,
    TOOLS,
    ToolDef,
    ToolOutput,
    ToolRegistry,
    make_tool,
    tool,
    tools_for_profile,
)

_FRAMEWORK = frozenset({"base", "registry"})


def load_tool_modules() -> list[str]:
    """Import every tool module of this package so its tools register into `TOOLS`."""
    loaded = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in _FRAMEWORK:
            continue
        importlib.import_module(f"{__name__}.{info.name}")
        loaded.append(info.name)
    return loaded


__all__ = [
    "METHOD_TAGS",
    "PROFILES",
    "QUERY_TOOL",
    "TOOLS",
    "Budget",
    "Budgets",
    "Charge",
    "Image",
    "ToolContext",
    "ToolDef",
    "ToolError",
    "ToolOutput",
    "ToolRegistry",
    "Usage",
    "describe_validation_error",
    "load_tool_modules",
    "make_tool",
    "tool",
    "tools_for_profile",
]
