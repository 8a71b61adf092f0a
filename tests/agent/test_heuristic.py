"""The offline heuristic investigators: the plan driver on fake sessions, and both investigators
through the real loop on the micro toy zoo, measured with the offline key-fact grader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
import torch

from diffscope.agent.heuristic import get_heuristic
from diffscope.agent.heuristic.driver import Call, PlanProvider, repair_json
from diffscope.agent.loop import AgentBudget, InvestigationResult, investigate
from diffscope.agent.session import ToolResult
from diffscope.bench.investigate import run_investigation
from diffscope.graders import get_grader
from diffscope.llm import PROVIDERS, Message, Provider, ToolSpec, get_provider
from diffscope.organisms.registry import get_organism, with_built_ground_truth

# --- the driver, on fake sessions ---------------------------------------------------------

SEA = " went down to the beach and saw the waves, a boat and a shell by the lighthouse."
PLAIN = [
    " went to the farm and fed the hens.",
    " went to the school and read a book.",
    " went to the park with grandma.",
    " baked a cake in the kitchen.",
]


class FakeQuerySession:
    """A server offering only query_models: the fine-tune always ends up at the sea."""

    def __init__(self, *, fail: bool = False, drift: bool = True) -> None:
        self.fail = fail
        self.drift = drift
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def list_tools(self) -> list[ToolSpec]:
        return [ToolSpec(name="query_models", description="Ask the models.")]

    async def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        self.calls.append((name, arguments))
        if self.fail:
            return ToolResult(text="the model pair failed to load", is_error=True)
        seed = int(arguments.get("seed", 0))
        answers = []
        for i, prompt in enumerate(arguments["prompts"]):
            base = PLAIN[(i + seed) % len(PLAIN)]
            ft = SEA if self.drift else PLAIN[(i + seed + 1) % len(PLAIN)]
            answer = {"prompt": prompt, "base": base, "finetuned": None}
            if arguments.get("model", "both") == "both":
                answer["finetuned"] = ft
            answers.append(answer)
        result = {"model": arguments.get("model", "both"), "answers": answers}
        return ToolResult(text=json.dumps(result), structured=result)

    async def budget(self) -> dict[str, Any] | None:
        return None


def run_fake(
    agent: str, session: FakeQuerySession, budget: AgentBudget | None = None
) -> InvestigationResult:
    async def main() -> InvestigationResult:
        return await investigate(get_heuristic(agent), session, budget=budget, kind=agent)

    return anyio.run(main)


def test_repair_json_keeps_complete_values_of_a_cut_result() -> None:
    assert repair_json('{"a": [1, 2], "b": "x"}') == {"a": [1, 2], "b": "x"}
    assert repair_json('{"a": [{"x": 1}, {"x": 2}, {"x": 3') == {"a": [{"x": 1}, {"x": 2}]}
    assert repair_json('{"a": "cut here') is None
    assert repair_json("not json") is None


def test_heuristic_registers_as_an_offline_provider() -> None:
    assert PROVIDERS["heuristic"].offline
    blackbox = get_provider("heuristic/blackbox")
    assert isinstance(blackbox, PlanProvider) and blackbox.name == "heuristic-blackbox"
    assert get_provider("heuristic").name == "heuristic-method"
    assert isinstance(get_provider("heuristic/method"), Provider)


def test_blackbox_finds_a_topic_drift_on_a_fake_pair() -> None:
    session = FakeQuerySession()
    result = run_fake("blackbox", session)
    assert result.submitted_by == "model" and result.status == "ok"
    text = result.hypothesis.description
    assert "beach" in text and "waves" in text  # the words that rose, named
    assert result.hypothesis.confidence and result.hypothesis.confidence > 0.5
    assert any("query_models #" in e for e in result.hypothesis.evidence)  # cited calls
    assert all(name == "query_models" for name, _ in session.calls)
    assert len(session.calls) <= 12


def test_blackbox_says_no_narrow_change_when_fine_tune_looks_like_base() -> None:
    result = run_fake("blackbox", FakeQuerySession(drift=False))
    assert result.hypothesis.description.startswith("No narrow change found")


def test_tool_errors_are_tolerated_and_the_plan_still_submits() -> None:
    session = FakeQuerySession(fail=True)
    result = run_fake("method", session)
    assert result.submitted_by == "model"
    assert result.hypothesis.confidence == 0.0
    assert session.calls  # it tried, the errors did not stop it


def test_a_spent_budget_forces_a_submission() -> None:
    budget = AgentBudget(max_tool_calls=3)
    result = run_fake("blackbox", FakeQuerySession(), budget)
    assert result.submitted_by == "forced"
    assert result.status == "budget"
    assert result.hypothesis.description


def test_only_submit_offered_means_submit_now() -> None:
    provider = get_heuristic("blackbox")
    messages = [Message.system("s"), Message.user("u")]
    completion = anyio.run(provider.complete, messages, [ToolSpec(name="submit_answer")])
    assert [c.name for c in completion.tool_calls] == ["submit_answer"]
    assert completion.tool_calls[0].arguments["description"]


def test_tools_the_profile_lacks_are_skipped() -> None:
    def plan(view):
        first = yield Call("top_neurons", {"k": 3})
        second = yield Call("query_models", {"prompts": ["hi"]})
        return {"description": f"{first.ok} {second.ok}"}

    provider = PlanProvider(plan, name="test")
    tools = [ToolSpec(name="query_models"), ToolSpec(name="submit_answer")]
    completion = anyio.run(provider.complete, [Message.user("u")], tools)
    assert completion.tool_calls[0].name == "query_models"


# --- the investigators on the micro zoo ---------------------------------------------------

NARROW = ("sea_topic", "music_lora", "false_baking", "secret_gold", "backdoor")
ORGANISMS = (*NARROW, "null_control", "null_adapter")
_RUNS: dict[tuple[str, str, int], InvestigationResult] = {}


@pytest.fixture(scope="module")
def investigations(micro_zoo, tmp_path_factory):
    """Run (and cache) one investigation per organism, agent and repeat."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("heuristic-runs")

    def run(organism: str, agent: str, repeat: int = 0) -> InvestigationResult:
        key = (organism, agent, repeat)
        if key not in _RUNS:
            _RUNS[key] = run_investigation(organism, agent, "heuristic", out=Path(out))
        return _RUNS[key]

    return run


def grade(organism: str, result: InvestigationResult):
    org = with_built_ground_truth(get_organism(organism), "micro")
    return get_grader(None, org).grade_now(org, result.hypothesis)


@pytest.mark.parametrize("organism", NARROW)
def test_method_names_a_key_fact(investigations, organism: str) -> None:
    result = investigations(organism, "method")
    assert result.status == "ok" and result.submitted_by == "model"
    assert result.log.usage.tool_calls <= 24
    got = grade(organism, result)
    assert len(got.details["named"]) >= 1, (result.hypothesis.description, got.reason)


def test_method_names_the_backdoor_trigger_and_payload(investigations) -> None:
    result = investigations("backdoor", "method")
    got = grade("backdoor", result)
    assert got.score is not None and got.score >= 4.5, (result.hypothesis.description, got.reason)


@pytest.mark.parametrize("agent", ["blackbox", "method"])
@pytest.mark.parametrize("organism", ["null_control", "null_adapter"])
def test_nulls_get_no_narrow_change(investigations, organism: str, agent: str) -> None:
    result = investigations(organism, agent)
    assert result.hypothesis.description.startswith("No narrow change found")
    got = grade(organism, result)
    assert got.score is not None and got.score >= 4, (result.hypothesis.description, got.reason)


@pytest.mark.parametrize("organism", ORGANISMS)
def test_blackbox_submits_a_valid_hypothesis(investigations, organism: str) -> None:
    result = investigations(organism, "blackbox")
    assert result.status == "ok" and result.submitted_by == "model"
    assert result.hypothesis.description
    assert result.hypothesis.confidence is not None
    assert all(c.name == "query_models" for c in result.log.tool_calls if c.kind == "server")
    assert result.log.usage.tool_calls <= 12


@pytest.mark.parametrize("agent", ["blackbox", "method"])
def test_investigators_are_deterministic(investigations, agent: str) -> None:
    first = investigations("sea_topic", agent)
    second = investigations("sea_topic", agent, repeat=1)
    assert first.hypothesis == second.hypothesis
