"""Investigator agents: LLM providers, the MCP tool session, the tool loop, prompts and run logs.

    from diffscope.agent import AgentBudget, ToolSession, investigate, run_investigation

`investigate(provider, session, budget=...)` runs one investigation over an open `ToolSession`;
`run_investigation(organism, agent, model, budget, out)` builds the server and provider, runs and
writes the log. The names below are imported on first use, so `import diffscope.agent.providers`
stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AgentBudget": "diffscope.agent.loop",
    "InvestigationResult": "diffscope.agent.loop",
    "investigate": "diffscope.agent.loop",
    "run_investigation": "diffscope.agent.loop",
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
