"""Offline, deterministic investigators: scripted plans over the same MCP tools, no LLM.

`get_heuristic("blackbox")` samples both models with `query_models` and contrasts word statistics
against a base-vs-base noise floor; `get_heuristic("method")` (or any other profile name) reads the
diffing tools the profile offers (promoted tokens, neurons, KL, the difference lens, steering,
amplification) and checks its candidate by querying both models. Each is a `Provider` whose
`complete` returns the next tool call and finally `submit_answer`, so it runs through the same
agent loop, budgets and logs as an LLM investigator (`run_investigation(..., model="heuristic")`).
Importing this package registers them in `diffscope.llm.PROVIDERS` as the offline provider
`heuristic`, so `get_provider("heuristic/blackbox")` builds one (a bare `heuristic`: the method one).
"""

from __future__ import annotations

from typing import Any

from diffscope.agent.heuristic.blackbox import blackbox_plan
from diffscope.agent.heuristic.driver import Call, PlanProvider, Result, View
from diffscope.agent.heuristic.method import method_plan
from diffscope.llm import PROVIDERS, Provider, ProviderConfig, ProviderKind


def get_heuristic(agent: str) -> Provider:
    """The offline investigator for an agent name: "blackbox", else the method investigator."""
    if agent.strip() == "blackbox":
        return PlanProvider(blackbox_plan, name="heuristic-blackbox")
    return PlanProvider(method_plan, name="heuristic-method")


def _build(config: ProviderConfig, **_: Any) -> Provider:
    """`heuristic/<agent>` as a provider; keywords for network providers (retry, ...) are moot."""
    return get_heuristic(config.model)


PROVIDERS["heuristic"] = ProviderKind(
    "the offline heuristic investigators, no LLM: heuristic/blackbox, heuristic/method",
    _build,
    offline=True,
)


__all__ = [
    "Call",
    "PlanProvider",
    "Result",
    "View",
    "blackbox_plan",
    "get_heuristic",
    "method_plan",
]
