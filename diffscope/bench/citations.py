"""The tool-to-agent gap: per tool, how often its output was cited in a claim the grader credited.

From one run log and its grade: every server tool call counts as a call of its tool; a call is
*cited* when a claim of the final hypothesis lists its id, and *credited* when a claim that the
grade credits lists it (the grade's `details["claims"]`, written by `bench.grading`). Calls that
failed count as calls too. Old logs, whose hypotheses have no claims, give calls and no citations.
`tool_table` sums the runs per agent and tool.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from diffscope.agent.log import RunLog

CALLS, CITED, CREDITED = 0, 1, 2


class ToolUse(BaseModel):
    """One agent's use of one tool over the benchmark's runs."""

    agent: str
    tool: str
    calls: int = 0
    cited: int = 0
    credited: int = 0
    runs: int = 0

    @property
    def cited_share(self) -> float | None:
        """Cited calls over calls (None without calls)."""
        return self.cited / self.calls if self.calls else None

    @property
    def credited_share(self) -> float | None:
        """Calls cited in a credited claim over calls (None without calls)."""
        return self.credited / self.calls if self.calls else None


def run_tool_use(log: RunLog, grade: Mapping[str, Any] | None) -> dict[str, list[int]]:
    """`tool -> [calls, cited, credited]` of one run (the grade may be missing)."""
    hypothesis = (log.final.hypothesis if log.final is not None else {}) or {}
    cited: set[str] = set()
    for claim in hypothesis.get("claims") or []:
        if isinstance(claim, Mapping):
            cited.update(str(i) for i in claim.get("calls") or [])
    credited: set[str] = set()
    for claim in ((grade or {}).get("details") or {}).get("claims") or []:
        if isinstance(claim, Mapping) and claim.get("credited"):
            credited.update(str(i) for i in claim.get("calls") or [])
    credited &= cited  # a grade of another hypothesis cannot credit this one's calls
    found: dict[str, list[int]] = {}
    for call in log.tool_calls:
        if call.kind != "server":
            continue
        counts = found.setdefault(call.name, [0, 0, 0])
        counts[CALLS] += 1
        counts[CITED] += call.id in cited
        counts[CREDITED] += call.id in credited
    return found


def tool_table(rows: Iterable[tuple[str, Mapping[str, list[int]]]]) -> list[ToolUse]:
    """Sum `(agent, run_tool_use)` pairs into one row per agent and tool, sorted."""
    table: dict[tuple[str, str], ToolUse] = {}
    for agent, use in rows:
        for tool, counts in use.items():
            row = table.setdefault((agent, tool), ToolUse(agent=agent, tool=tool))
            row.calls += counts[CALLS]
            row.cited += counts[CITED]
            row.credited += counts[CREDITED]
            row.runs += 1
    return [table[key] for key in sorted(table)]
