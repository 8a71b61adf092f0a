"""The agent loop driving the real OpenAI and Anthropic SDK clients over scripted HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from loopfakes import SECRET, run_loop

from diffscope.agent.log import load_run_log
from diffscope.llm import RetryPolicy, get_provider
from diffscope.llm.mock_http import (
    MockAPI,
    anthropic_message_json,
    error_response,
    openai_chat_json,
)

FINAL = {
    "description": "The fine-tune answers in upper case.",
    "key_claims": ["upper case answers"],
    "confidence": 0.9,
    "evidence": ["'hi' -> 'HI'"],
}


class Sleeps:
    """A recording stand-in for asyncio.sleep."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def openai_script() -> MockAPI:
    return MockAPI(
        openai_chat_json("Adding first.", tool_calls=[("call_1", "add", '{"a": 2, "b": 3}')]),
        openai_chat_json(tool_calls=[("call_2", "fails", '{"mode": "tool"}')]),
        error_response(429, "Rate limit reached", headers={"Retry-After": "7"}),
        openai_chat_json(tool_calls=[("call_3", "query_models", '{"prompts": ["hi"')]),
        error_response(529, "Overloaded", kind="overloaded_error"),
        openai_chat_json(
            "I am confident.", tool_calls=[("call_4", "submit_answer", json.dumps(FINAL))]
        ),
    )


def anthropic_script() -> MockAPI:
    return MockAPI(
        anthropic_message_json("Adding first.", tool_uses=[("toolu_1", "add", {"a": 2, "b": 3})]),
        anthropic_message_json(tool_uses=[("toolu_2", "fails", {"mode": "tool"})]),
        error_response(
            429, "Rate limit reached", kind="rate_limit_error", headers={"Retry-After": "7"}
        ),
        anthropic_message_json(tool_uses=[("toolu_3", "query_models", "prompts=hi")]),  # type: ignore[list-item]
        error_response(529, "Overloaded", kind="overloaded_error", anthropic=True),
        anthropic_message_json("I am confident.", tool_uses=[("toolu_4", "submit_answer", FINAL)]),
    )


def tool_results(body: dict[str, Any], sdk: str) -> list[tuple[str, str, bool]]:
    """(call id, content, is_error) of every tool result in a request body."""
    found = []
    for message in body["messages"]:
        if sdk == "openai" and message["role"] == "tool":
            content = message["content"]
            found.append((message["tool_call_id"], content, content.startswith("Error: ")))
        if sdk == "anthropic" and isinstance(message["content"], list):
            for block in message["content"]:
                if block.get("type") == "tool_result":
                    content = block["content"]
                    if isinstance(content, list):
                        content = "".join(part.get("text", "") for part in content)
                    found.append((block["tool_use_id"], content, bool(block.get("is_error"))))
    return found


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_real_sdk_through_the_loop(sdk: str, tmp_path: Path) -> None:
    api = openai_script() if sdk == "openai" else anthropic_script()
    sleeps = Sleeps()
    model = "openai/gpt-5" if sdk == "openai" else "anthropic/claude-sonnet-5"
    provider = get_provider(
        model, api_key="sk-test", http_client=api.client(), retry=RetryPolicy(sleep=sleeps)
    )
    result = run_loop(provider, log=tmp_path / "run.json", organism="fake", agent="method")

    assert (result.status, result.submitted_by, result.error) == ("ok", "model", None)
    assert result.hypothesis.description == FINAL["description"]
    assert result.hypothesis.confidence == 0.9
    assert len(api.requests) == 6 and api.queue == []
    assert sleeps.waits[0] == 7.0 and len(sleeps.waits) == 2  # 429 (Retry-After) and 529

    bodies = api.bodies
    tools = bodies[0]["tools"]
    names = [t["function"]["name"] if sdk == "openai" else t["name"] for t in tools]
    assert names[-2:] == ["record_hypothesis", "submit_answer"] and "add" in names
    ids = ["call_1", "call_2", "call_3"] if sdk == "openai" else ["toolu_1", "toolu_2", "toolu_3"]
    final = tool_results(bodies[-1], sdk)
    assert [item[0] for item in final] == ids
    (_, added, added_err), (_, failed, failed_err), (_, bad, bad_err) = final
    assert added == '{"total":5}' and not added_err
    assert failed_err and "mode 'tool' always fails" in failed
    assert bad_err and "query_models" in bad
    assert tool_results(bodies[2], sdk) == tool_results(bodies[3], sdk)  # the retry resent it

    log = load_run_log(tmp_path / "run.json")
    assert log.provider == model
    assert log.model == ("gpt-test" if sdk == "openai" else "claude-test")
    assert [(c.name, c.kind, c.is_error) for c in log.tool_calls] == [
        ("add", "server", False),
        ("fails", "server", True),
        ("query_models", "malformed", True),
        ("submit_answer", "local", False),
    ]
    assert log.tool_calls[2].parse_error
    assert (log.usage.input_tokens, log.usage.output_tokens) == (40, 20)
    assert log.usage.turns == 4
    events = [e.message for e in log.events]
    assert len(events) == 2
    assert "rate limited (HTTP 429)" in events[0] and "retrying in 7.0s" in events[0]
    assert "overloaded (HTTP 529)" in events[1]
    assert [m.content for m in log.messages if m.role == "assistant"][0] == "Adding first."
    assert log.final.submitted_by == "model" and log.status == "ok"
    for request in api.requests:
        assert SECRET not in request.content.decode()
