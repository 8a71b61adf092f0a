"""The Anthropic adapter driven through the real SDK client over a mock HTTP transport."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest

from diffscope.llm import (
    AnthropicProvider,
    Completion,
    Message,
    ProviderError,
    RetryPolicy,
    ToolCall,
    ToolSpec,
    get_provider,
)
from diffscope.llm.mock_http import MockAPI, anthropic_message_json, error_response

TOOLS = [
    ToolSpec(
        name="top_neurons",
        description="Neurons with the largest activation gap.",
        parameters={"type": "object", "properties": {"k": {"type": "integer"}}},
    ),
    ToolSpec(name="list_layers", description="The layers.", parameters={}),
]


class Sleeps:
    """A recording stand-in for asyncio.sleep."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make(api: MockAPI, sleeps: Sleeps | None = None) -> AnthropicProvider:
    provider = get_provider(
        "anthropic/claude-sonnet-5",
        api_key="sk-ant-test",
        http_client=api.client(),
        retry=RetryPolicy(sleep=sleeps or Sleeps()),
    )
    assert isinstance(provider, AnthropicProvider)
    return provider


def run(
    provider: AnthropicProvider, messages: list[Message], tools: list[ToolSpec] = TOOLS, **kw: Any
) -> Completion:
    return asyncio.run(provider.complete(messages, tools, **kw))


def test_tool_use_parsed_and_usage_counted() -> None:
    api = MockAPI(
        anthropic_message_json(
            "Let me look at the neurons.",
            tool_uses=[("toolu_1", "top_neurons", {"k": 5})],
            input_tokens=120,
            output_tokens=30,
        )
    )
    out = run(make(api), [Message.system("You investigate."), Message.user("What changed?")])
    assert out.text == "Let me look at the neurons."
    assert out.tool_calls == [
        ToolCall(id="toolu_1", name="top_neurons", arguments={"k": 5}, raw_arguments='{"k": 5}')
    ]
    assert out.stop_reason == "tool_calls"
    assert (out.usage.input_tokens, out.usage.output_tokens) == (120, 30)
    request = api.requests[0]
    assert str(request.url) == "https://api.anthropic.com/v1/messages"
    body = api.bodies[0]
    assert body["model"] == "claude-sonnet-5"
    assert body["max_tokens"] == 2048
    assert body["system"] == "You investigate."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "What changed?"}]}
    ]
    assert body["tools"] == [
        {
            "name": "top_neurons",
            "description": "Neurons with the largest activation gap.",
            "input_schema": {"type": "object", "properties": {"k": {"type": "integer"}}},
        },
        {
            "name": "list_layers",
            "description": "The layers.",
            "input_schema": {"type": "object", "properties": {}},
        },
    ]
    assert "temperature" not in body


def test_tool_results_merged_into_one_user_turn() -> None:
    api = MockAPI(anthropic_message_json("Cats.", input_tokens=1, output_tokens=1))
    calls = [
        ToolCall.of("toolu_1", "top_neurons", {"k": 5}),
        ToolCall.parse("toolu_2", "list_layers", "{oops"),
    ]
    messages = [
        Message.system("sys"),
        Message.user("What changed?"),
        Message.assistant("Checking.", calls),
        Message.tool("toolu_1", "neuron 3.17: ' cat'"),
        Message.tool("toolu_2", "bad arguments", is_error=True),
        Message.user("Budget: 3 calls left."),
    ]
    out = run(make(api), messages, temperature=0.0, max_tokens=512)
    assert out.text == "Cats." and out.stop_reason == "stop" and out.tool_calls == []
    body = api.bodies[0]
    assert body["temperature"] == 0.0
    assert body["max_tokens"] == 512
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "What changed?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "top_neurons", "input": {"k": 5}},
                {"type": "tool_use", "id": "toolu_2", "name": "list_layers", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": "neuron 3.17: ' cat'",
                    "is_error": False,
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": "bad arguments",
                    "is_error": True,
                },
                {"type": "text", "text": "Budget: 3 calls left."},
            ],
        },
    ]


def test_529_overloaded_then_success() -> None:
    sleeps = Sleeps()
    api = MockAPI(
        error_response(529, "Overloaded", kind="overloaded_error", anthropic=True),
        anthropic_message_json("ok"),
    )
    assert run(make(api, sleeps), [Message.user("hi")]).text == "ok"
    assert len(api.requests) == 2
    assert len(sleeps.waits) == 1 and 1.0 <= sleeps.waits[0] <= 2.0


def test_429_honours_retry_after_then_succeeds() -> None:
    sleeps = Sleeps()
    api = MockAPI(
        error_response(
            429, "slow down", kind="rate_limit_error", anthropic=True, headers={"retry-after": "4"}
        ),
        anthropic_message_json("ok"),
    )
    assert run(make(api, sleeps), [Message.user("hi")]).text == "ok"
    assert len(api.requests) == 2 and sleeps.waits == [4.0]


def test_401_raises_without_retry() -> None:
    sleeps = Sleeps()
    api = MockAPI(
        error_response(401, "invalid x-api-key", kind="authentication_error", anthropic=True)
    )
    with pytest.raises(ProviderError, match="authentication failed.*ANTHROPIC_API_KEY") as err:
        run(make(api, sleeps), [Message.user("hi")])
    assert "invalid x-api-key" in str(err.value)
    assert len(api.requests) == 1 and sleeps.waits == []


def test_stop_reasons_normalised() -> None:
    api = MockAPI(anthropic_message_json("cut", stop_reason="max_tokens"))
    assert run(make(api), [Message.user("hi")]).stop_reason == "max_tokens"


def test_timeout_is_retried() -> None:
    sleeps = Sleeps()
    attempts: list[int] = []

    def slow_then_ok(request: httpx2.Request) -> httpx2.Response:
        attempts.append(1)
        if len(attempts) == 1:
            raise httpx2.ReadTimeout("read timed out", request=request)
        return httpx2.Response(200, json=anthropic_message_json("ok"))

    api = MockAPI(slow_then_ok, slow_then_ok)
    assert run(make(api, sleeps), [Message.user("hi")]).text == "ok"
    assert len(attempts) == 2 and len(sleeps.waits) == 1
