"""The agent loop over stdio: a spawned test server, and `run_investigation` end to end (the entry
point builds the connection from a PairSpec; the agent only opens it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from loopfakes import build_registry
from loopfakes import load_pair as fake_pair

import diffscope.server.app
from diffscope.agent import run as agent_run
from diffscope.agent.log import load_run_log
from diffscope.agent.loop import AgentBudget, investigate
from diffscope.agent.run import ServerConnection, investigate_over
from diffscope.agent.session import ToolSession, stdio_parameters
from diffscope.bench import investigate as entry
from diffscope.bench.investigate import run_investigation, server_connection
from diffscope.llm import Message, ScriptedProvider, ToolSpec, call
from diffscope.organisms.registry import get_organism
from diffscope.server.run import stdio_command
from diffscope.workspace import PairSpec

SERVER_SCRIPT = Path(__file__).resolve().parent.parent / "server" / "stdio_server.py"
FINAL = {"description": "The fine-tune echoes in upper case.", "confidence": 0.7}


def test_loop_over_stdio(tmp_path: Path) -> None:
    provider = ScriptedProvider(
        [
            call("add", a=20, b=22),
            call("fails", mode="tool"),
            call("noisy"),
            call("plot"),
            call("record_hypothesis", description="upper case", confidence=0.5),
            call("submit_answer", **FINAL),
        ]
    )
    params = stdio_parameters(
        [sys.executable, str(SERVER_SCRIPT)], env={"DIFFSCOPE_TEST_TOOL_CALLS": "3"}
    )

    async def main() -> Any:
        async with ToolSession.connect(params) as session:
            return await investigate(
                provider, session, log=tmp_path / "run.json", transport="stdio"
            )

    result = anyio.run(main)
    assert (result.status, result.submitted_by) == ("ok", "model")
    assert result.hypothesis.description == FINAL["description"]
    results = [r.messages[-1] for r in provider.requests[1:5]]
    assert results[0].content == '{"total":42}'
    assert results[1].is_error and "mode 'tool' always fails" in results[1].content
    assert results[2].content == '{"text":"still fine"}'  # stray prints did not break the wire
    assert results[3].is_error and "budget spent: tool_calls used 3 of 3" in results[3].content
    log = load_run_log(tmp_path / "run.json")
    assert log.transport == "stdio"
    assert log.usage.server == {"tool_calls": 3, "model_queries": 0, "generated_tokens": 0}
    assert "secret" not in (tmp_path / "run.json").read_text()


def leaks(org_name: str) -> list[str]:
    """Ground-truth strings of a built-in organism that must never reach the model or the log."""
    truth = get_organism(org_name).ground_truth
    facts = [fact.fact for fact in truth.key_facts]
    return [truth.description, *facts, "zephyr", "purple moon"]


def script(messages: list[Message], tools: list[ToolSpec]) -> Any:
    if len(messages) == 2:
        return call("query_models", prompts=["hello"])
    return call("submit_answer", description="it shouts", confidence=0.4)


def test_run_investigation_in_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}
    real_create_server = diffscope.server.app.create_server

    def fake_create_server(loader: Any, profile: str, **kw: Any) -> Any:
        seen.update(profile=profile, loader=loader, **kw)
        return real_create_server(fake_pair, profile, registry=build_registry(), **kw)

    monkeypatch.setattr(diffscope.server.app, "create_server", fake_create_server)
    provider = ScriptedProvider(script)
    budget = AgentBudget(max_tool_calls=5, max_model_queries=9)
    result = run_investigation(
        "backdoor", "blackbox", "scripted", budget, out=tmp_path, provider=provider
    )

    assert (result.status, result.submitted_by) == ("ok", "model")
    assert seen["profile"] == "blackbox"
    # the server gets the investigator's view of the spec, never the Organism
    assert isinstance(seen["organism"], dict) and "name" not in seen["organism"]
    assert seen["organism"]["corpus"] == "the synthetic world corpus"
    assert seen["budget"].tool_calls == 5 and seen["budget"].model_queries == 9
    assert [spec.name for spec in provider.requests[0].tools] == [
        "query_models",
        "record_hypothesis",
        "submit_answer",
    ]
    assert result.log_path == tmp_path / f"{result.log.run_id}.json"
    log = load_run_log(result.log_path)
    assert (log.organism, log.agent, log.profile, log.transport) == (
        "backdoor",
        "blackbox",
        "blackbox",
        "inprocess",
    )
    assert log.usage.server["model_queries"] == 1
    sent = json.dumps([r.messages for r in provider.requests], default=str).lower()
    written = result.log_path.read_text().lower()
    for secret in leaks("backdoor"):
        assert secret.lower() not in sent
        assert secret.lower() not in written


def test_run_investigation_over_stdio(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    commands: list[tuple[Any, ...]] = []

    def command(spec: PairSpec, profile: str, **kw: Any) -> list[str]:
        commands.append((spec, profile, kw))
        return [sys.executable, str(SERVER_SCRIPT)]

    monkeypatch.setattr(entry, "stdio_command", command)
    monkeypatch.setenv("DIFFSCOPE_TEST_PROFILE", "kl")
    result = run_investigation(
        "backdoor",
        "kl",
        "scripted",
        AgentBudget(max_tool_calls=7),
        out=tmp_path / "one.json",
        transport="stdio",
        provider=ScriptedProvider(script),
    )
    spec, profile, kw = commands[0]
    assert (len(commands), spec, profile) == (1, PairSpec(organism="backdoor"), "kl")
    assert kw == {"max_tool_calls": 7, "max_model_queries": None, "extra": ()}
    assert (result.status, result.submitted_by) == ("ok", "model")
    assert result.log_path == tmp_path / "one.json"
    assert load_run_log(tmp_path / "one.json").transport == "stdio"


def test_run_investigation_when_the_server_cannot_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    failing = [sys.executable, "-c", "import sys; sys.exit(3)"]
    monkeypatch.setattr(entry, "stdio_command", lambda *args, **kw: failing)
    result = run_investigation(
        "backdoor",
        "method",
        "scripted",
        out=tmp_path,
        transport="stdio",
        provider=ScriptedProvider([]),
    )
    assert (result.status, result.submitted_by) == ("error", "fallback")
    assert result.error
    log = load_run_log(result.log_path)
    assert log.status == "error" and log.organism == "backdoor"


def test_an_in_process_server_that_cannot_be_built_fails_the_run(tmp_path: Path) -> None:
    def broken() -> Any:
        raise RuntimeError("no such pair")

    result = investigate_over(
        ServerConnection(server=broken), ScriptedProvider([]), out=tmp_path, organism="x"
    )
    assert (result.status, result.submitted_by) == ("error", "fallback")
    assert "no such pair" in (result.error or "")
    assert load_run_log(result.log_path).transport == "inprocess"


def test_stdio_command_and_profiles() -> None:
    spec = PairSpec(organism="sea_topic")
    assert stdio_command(spec, "method")[1:] == [
        "-m",
        "diffscope.server",
        "sea_topic",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--backend",
        "hooks",
        "--profile",
        "method",
    ]
    assert stdio_command(spec, "kl", max_tool_calls=3, max_model_queries=4)[-4:] == [
        "--max-tool-calls",
        "3",
        "--max-model-queries",
        "4",
    ]
    connection = server_connection(spec, "method", AgentBudget(), "stdio")
    assert connection.transport == "stdio" and connection.command is not None
    assert server_connection(spec, "method", AgentBudget()).transport == "inprocess"
    with pytest.raises(ValueError, match="exactly one"):
        ServerConnection()
    assert agent_run.resolve_profile("blackbox") == ("blackbox", "blackbox")
    assert agent_run.resolve_profile("kl,lens") == ("method", "kl,lens")
    with pytest.raises(ValueError, match="transport"):
        run_investigation("backdoor", "method", "scripted", transport="http")  # type: ignore[arg-type]


def test_default_log_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DIFFSCOPE_HOME", str(tmp_path))
    assert agent_run.log_target(None, "r1") == tmp_path / "runs" / "r1.json"
    assert agent_run.log_target(tmp_path / "x.json", "r1") == tmp_path / "x.json"
    assert agent_run.log_target(tmp_path / "dir", "r1") == tmp_path / "dir" / "r1.json"
