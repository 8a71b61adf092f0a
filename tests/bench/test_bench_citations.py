"""The per-tool citation table (the tool-to-agent gap), from run logs and grades only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchfakes import ORGANISMS, run_bench

from diffscope.agent.log import FinalAnswer, RunLog, ToolCallRecord
from diffscope.bench.citations import run_tool_use, tool_table
from diffscope.bench.render import markdown
from diffscope.llm import ScriptedProvider, call


def test_run_tool_use_counts_calls_cited_and_credited() -> None:
    log = RunLog(
        tool_calls=[
            ToolCallRecord(id="a", name="kl_probe", turn=1, kind="server"),
            ToolCallRecord(id="b", name="kl_probe", turn=1, kind="server", is_error=True),
            ToolCallRecord(id="c", name="top_neurons", turn=2, kind="server"),
            ToolCallRecord(id="d", name="record_hypothesis", turn=2, kind="local"),
        ],
        final=FinalAnswer(
            hypothesis={
                "description": "x",
                "claims": [{"text": "p", "calls": ["a", "c"]}, {"text": "q", "calls": ["b"]}],
            },
            submitted_by="model",
        ),
    )
    grade = {
        "details": {
            "claims": [{"calls": ["a", "c"], "credited": False}, {"calls": ["b"], "credited": True}]
        }
    }
    use = run_tool_use(log, grade)
    assert use == {"kl_probe": [2, 2, 1], "top_neurons": [1, 1, 0]}
    assert run_tool_use(log, None) == {"kl_probe": [2, 2, 0], "top_neurons": [1, 1, 0]}
    old = log.model_copy(
        update={"final": FinalAnswer(hypothesis={"description": "x"}, submitted_by="model")}
    )
    assert run_tool_use(old, grade)["kl_probe"] == [2, 0, 0]  # an old log: calls, no citations
    table = tool_table(
        [("method", use), ("method", use), ("blackbox", {"query_models": [3, 1, 1]})]
    )
    rows = {(t.agent, t.tool): (t.calls, t.cited, t.credited, t.runs) for t in table}
    assert rows[("method", "kl_probe")] == (4, 4, 2, 2)
    assert rows[("blackbox", "query_models")] == (3, 1, 1, 1)


class CitingFactory:
    """A scripted investigator that calls `query_models` once, then cites it in its claims."""

    def __call__(self, organism: str, agent: str, run: int) -> ScriptedProvider:
        word = ORGANISMS[organism][2]

        def script(messages: Any, tools: Any) -> Any:
            if not any(m.role == "tool" for m in messages):
                return call("query_models", id="q1", prompts=["Tell me a story."])
            return call(
                "submit_answer",
                description=f"The fine-tune is about {word}.",
                claims=[
                    {"text": f"It talks about {word}", "calls": ["q1"]},
                    {"text": "Answers are long", "calls": ["q1"]},
                ],
            )

        return ScriptedProvider(script)


def test_bench_summary_reports_the_tool_table(fake_organisms: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    summary = run_bench(
        ["alpha", "beta"], ["blackbox"], "heuristic", out=out, provider_factory=CitingFactory()
    )
    [use] = summary.tools
    assert (use.agent, use.tool, use.calls, use.cited, use.credited) == (
        "blackbox",
        "query_models",
        2,
        2,
        2,
    )
    grades = sorted((out / "grades").glob("*.json"))
    assert grades
    import json

    claims = json.loads(grades[0].read_text())["grade"]["details"]["claims"]
    assert [c["credited"] for c in claims] == [True, False]
    text = markdown(summary)
    assert "## Tools cited in claims" in text
    assert "| blackbox | query_models | 2 | 2 | 2 | 100% |" in text
    assert (out / "summary.json").read_text().count('"tools"') == 1
