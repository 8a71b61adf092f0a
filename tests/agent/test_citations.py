"""Hypotheses that cite their evidence: claims with the run log's tool call ids, for the offline
investigators and for an LLM (scripted) alike; old logs without claims still load."""

from __future__ import annotations

import anyio
from test_heuristic import FakeQuerySession, run_fake

from diffscope.agent.answers import HYPOTHESIS_SCHEMA, parse_hypothesis
from diffscope.agent.loop import investigate
from diffscope.agent.prompts import ANSWER
from diffscope.llm import Hypothesis, ScriptedProvider, call


def server_ids(result) -> set[str]:
    return {c.id for c in result.log.tool_calls if c.kind == "server"}


def test_offline_claims_cite_the_calls_that_produced_them() -> None:
    result = run_fake("blackbox", FakeQuerySession())
    hyp = result.hypothesis
    assert hyp.claims and [c.text for c in hyp.claims] == hyp.key_claims
    ids = server_ids(result)
    for claim in hyp.claims:
        assert claim.calls, claim
        assert set(claim.calls) <= ids, (claim, ids)
    # the final hypothesis in the log carries the citations too
    assert result.log.final is not None
    logged = Hypothesis.model_validate(result.log.final.hypothesis)
    assert logged.cited_calls() == hyp.cited_calls()


def test_the_null_answer_cites_every_call_it_read() -> None:
    result = run_fake("blackbox", FakeQuerySession(drift=False))
    hyp = result.hypothesis
    assert hyp.description.startswith("No narrow change found")
    assert {i for c in hyp.claims for i in c.calls} == server_ids(result)


def test_an_llm_submits_claims_with_call_ids() -> None:
    assert "claims" in HYPOTHESIS_SCHEMA["properties"] and "`claims`" in ANSWER

    def script(messages, tools):
        asked = [m for m in messages if m.role == "tool"]
        if not asked:
            return call("query_models", id="q1", prompts=["Once upon a time"])
        return call(
            "submit_answer",
            description="Stories drift to the beach.",
            claims=[{"text": "Stories end at the beach", "calls": ["q1"]}],
        )

    session = FakeQuerySession()

    async def main():
        return await investigate(ScriptedProvider(script), session, kind="blackbox")

    result = anyio.run(main)
    assert result.submitted_by == "model"
    assert [(c.text, c.calls) for c in result.hypothesis.claims] == [
        ("Stories end at the beach", ["q1"])
    ]
    assert "q1" in server_ids(result)


def test_claims_are_optional_and_old_hypotheses_still_load() -> None:
    old = {"description": "d", "key_claims": ["a"], "confidence": 0.5, "evidence": ["e"]}
    hyp = Hypothesis.model_validate(old)
    assert hyp.claims == [] and hyp.claims_text() == "d\na"
    mixed = parse_hypothesis(
        "submit_answer", {"description": "d", "key_claims": ["a"], "claims": ["a", {"text": "b"}]}
    )
    assert mixed.all_claims() == ["a", "b"]  # a claim listed twice is matched once
    try:
        parse_hypothesis("submit_answer", {"description": "d", "claims": [{"calls": ["x"]}]})
    except ValueError as exc:
        assert "claims.0.text" in str(exc)
    else:
        raise AssertionError("a claim without text must be refused")


def test_method_prompts_point_to_the_overview_first() -> None:
    from diffscope.agent.prompts import OVERVIEW_HINT, system_prompt
    from diffscope.llm import ToolSpec

    method = [ToolSpec(name="overview", description="Where to look."), ToolSpec(name="kl_probe")]
    assert OVERVIEW_HINT in system_prompt(method)
    assert OVERVIEW_HINT not in system_prompt([ToolSpec(name="kl_probe")])
    assert OVERVIEW_HINT not in system_prompt([ToolSpec(name="query_models")], "blackbox")
