"""Investigator agents: the MCP tool session, the tool loop, prompts, run logs, offline investigators.

    from diffscope.agent import AgentBudget, ServerConnection, ToolSession, investigate

`investigate(provider, session, budget=...)` runs one investigation over an open `ToolSession`;
`investigate_over(connection, provider, ...)` opens the `ServerConnection` an entry point built
(an in-process server factory or a stdio command), runs and writes the log. The agent never
builds a server and never holds an organism. LLM providers live in `diffscope.llm`. The names
below are imported on first use, so `import diffscope.agent.log` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AgentBudget": "diffscope.agent.loop",
    "InvestigationResult": "diffscope.agent.loop",
    "investigate": "diffscope.agent.loop",
    "ServerConnection": "diffscope.agent.run",
    "investigate_over": "diffscope.agent.run",
    "ToolResult": "diffscope.agent.session",
    "ToolSession": "diffscope.agent.session",
    "ToolSource": "diffscope.agent.session",
    "RunLog": "diffscope.agent.log",
    "load_run_log": "diffscope.agent.log",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
