"""Offline, deterministic investigators: scripted plans over the same MCP tools, no LLM.

`get_heuristic("blackbox")` samples both models with `query_models` and contrasts word statistics
against a base-vs-base noise floor; `get_heuristic("method")` (or any other profile name) reads the
diffing tools the profile offers (promoted tokens, neurons, KL, the difference lens, steering,
amplification) and checks its candidate by querying both models. Each is a `Provider` whose
`complete` returns the next tool call and finally `submit_answer`, so it runs through the same
agent loop, budgets and logs as an LLM investigator (`run_investigation(..., model="heuristic")`).
"""

from __future__ import annotations

from diffscope.agent.heuristic.blackbox import blackbox_plan
from diffscope.agent.heuristic.driver import Call, PlanProvider, Result, View
from diffscope.agent.heuristic.method import method_plan
from diffscope.agent.providers.base import Provider


def get_heuristic(agent: str) -> Provider:
    """The offline investigator for an agent name: "blackbox", else the method investigator."""
    if agent.strip() == "blackbox":
        return PlanProvider(blackbox_plan, name="heuristic-blackbox")
    return PlanProvider(method_plan, name="heuristic-method")


__all__ = [
    "Call",
    "PlanProvider",
    "Result",
    "View",
    "blackbox_plan",
    "get_heuristic",
    "method_plan",
]
