"""The OpenAI adapter driven through the real SDK client over a mock HTTP transport."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import httpx2
import pytest

from diffscope.llm import (
    Completion,
    Message,
    OpenAIProvider,
    ProviderError,
    RetryPolicy,
    ToolCall,
    ToolSpec,
    get_provider,
    parse_retry_after,
)
from diffscope.llm.mock_http import MockAPI, error_response, openai_chat_json

TOOLS = [
    ToolSpec(
        name="kl_probe",
        description="Per-token KL between the models.",
        parameters={
            "type": "object",
            "properties": {"prompts": {"type": "array", "items": {"type": "string"}}},
            "required": ["prompts"],
        },
    )
]


class Sleeps:
    """A recording stand-in for asyncio.sleep."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make(api: MockAPI, sleeps: Sleeps | None = None, *, max_attempts: int = 6) -> OpenAIProvider:
    policy = RetryPolicy(sleep=sleeps or Sleeps(), max_attempts=max_attempts)
    provider = get_provider(
        "openai/gpt-5", api_key="sk-test", http_client=api.client(), retry=policy
    )
    assert isinstance(provider, OpenAIProvider)
    return provider


def run(
    provider: OpenAIProvider, messages: list[Message], tools: list[ToolSpec] = TOOLS, **kw: Any
) -> Completion:
    return asyncio.run(provider.complete(messages, tools, **kw))


def test_tool_call_parsed_and_usage_counted() -> None:
    api = MockAPI(
        openai_chat_json(
            tool_calls=[("call_a", "kl_probe", '{"prompts": ["hello"]}')],
            prompt_tokens=42,
            completion_tokens=7,
        )
    )
    out = run(make(api), [Message.system("be brief"), Message.user("probe it")])
    assert out.stop_reason == "tool_calls"
    assert out.tool_calls == [
        ToolCall(
            id="call_a",
            name="kl_probe",
            arguments={"prompts": ["hello"]},
            raw_arguments='{"prompts": ["hello"]}',
        )
    ]
    assert (out.usage.input_tokens, out.usage.output_tokens) == (42, 7)
    assert out.model == "gpt-test"
    body = api.bodies[0]
    assert str(api.requests[0].url) == "https://api.openai.com/v1/chat/completions"
    assert api.requests[0].headers["authorization"] == "Bearer sk-test"
    assert body["model"] == "gpt-5"
    assert body["max_completion_tokens"] == 2048
    assert "temperature" not in body
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "probe it"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "kl_probe",
                "description": "Per-token KL between the models.",
                "parameters": TOOLS[0].parameters,
            },
        }
    ]


def test_tool_result_serialised() -> None:
    api = MockAPI(openai_chat_json("The fine-tune talks about cats."))
    call = ToolCall.of("call_a", "kl_probe", {"prompts": ["hi"]})
    messages = [
        Message.user("go"),
        Message.assistant("", [call]),
        Message.tool("call_a", "top KL: ' cat'", name="kl_probe"),
        Message.tool("call_b", "budget spent", is_error=True),
    ]
    out = run(make(api), messages, temperature=0.2, max_tokens=300)
    assert out.text == "The fine-tune talks about cats."
    assert out.stop_reason == "stop"
    assert out.tool_calls == []
    body = api.bodies[0]
    assert body["temperature"] == 0.2
    assert body["max_completion_tokens"] == 300
    assert body["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "kl_probe", "arguments": '{"prompts": ["hi"]}'},
            }
        ],
    }
    assert body["messages"][2] == {
        "role": "tool",
        "tool_call_id": "call_a",
        "content": "top KL: ' cat'",
    }
    assert body["messages"][3] == {
        "role": "tool",
        "tool_call_id": "call_b",
        "content": "Error: budget spent",
    }


def test_malformed_arguments_become_parse_error() -> None:
    api = MockAPI(
        openai_chat_json(
            tool_calls=[
                ("call_1", "kl_probe", '{"prompts": ["unterminated'),
                ("call_2", "kl_probe", '["not", "an", "object"]'),
                ("call_3", "list_tools", ""),
            ]
        )
    )
    out = run(make(api), [Message.user("go")])
    bad, wrong, empty = out.tool_calls
    assert bad.arguments == {} and bad.raw_arguments == '{"prompts": ["unterminated'
    assert bad.parse_error and "not valid JSON" in bad.parse_error
    assert wrong.parse_error and "JSON object" in wrong.parse_error
    assert empty.parse_error is None and empty.arguments == {}


def test_429_honours_retry_after_then_succeeds() -> None:
    sleeps = Sleeps()
    api = MockAPI(
        error_response(429, "Rate limit reached", headers={"Retry-After": "7"}),
        openai_chat_json("ok"),
    )
    out = run(make(api, sleeps), [Message.user("hi")])
    assert out.text == "ok"
    assert len(api.requests) == 2
    assert sleeps.waits == [7.0]
    assert api.requests[1].headers["x-stainless-retry-count"] == "0"  # the SDK did not retry


def test_retry_after_ms_and_cap() -> None:
    sleeps = Sleeps()
    api = MockAPI(
        error_response(429, headers={"retry-after-ms": "250"}),
        error_response(503, headers={"Retry-After": "3600"}),
        openai_chat_json("ok"),
    )
    assert run(make(api, sleeps), [Message.user("hi")]).text == "ok"
    assert sleeps.waits == [0.25, 60.0]


def test_500_then_success_uses_backoff() -> None:
    sleeps = Sleeps()
    api = MockAPI(error_response(500, "boom"), error_response(502), openai_chat_json("ok"))
    assert run(make(api, sleeps), [Message.user("hi")]).text == "ok"
    assert len(api.requests) == 3
    first, second = sleeps.waits
    assert 1.0 <= first <= 2.0 and 2.0 <= second <= 3.0


def test_gives_up_after_max_attempts() -> None:
    sleeps = Sleeps()
    api = MockAPI(*[error_response(500, "down") for _ in range(3)])
    with pytest.raises(ProviderError, match=r"server error \(HTTP 500\): down.*3 attempts") as err:
        run(make(api, sleeps, max_attempts=3), [Message.user("hi")])
    assert not err.value.retryable
    assert len(api.requests) == 3 and len(sleeps.waits) == 2


def test_401_raises_without_retry() -> None:
    sleeps = Sleeps()
    api = MockAPI(error_response(401, "Incorrect API key provided", kind="invalid_request_error"))
    with pytest.raises(ProviderError, match="authentication failed.*OPENAI_API_KEY") as err:
        run(make(api, sleeps), [Message.user("hi")])
    assert err.value.status_code == 401
    assert len(api.requests) == 1 and sleeps.waits == []


def test_400_raises_without_retry() -> None:
    api = MockAPI(error_response(400, "Unsupported parameter: 'temperature'"))
    with pytest.raises(ProviderError, match="rejected.*Unsupported parameter"):
        run(make(api), [Message.user("hi")], temperature=0.0)
    assert len(api.requests) == 1


def test_connection_error_is_retried() -> None:
    sleeps = Sleeps()
    state = {"n": 0}

    def flaky(request: httpx2.Request) -> httpx2.Response:
        state["n"] += 1
        if state["n"] == 1:
            raise httpx2.ConnectError("refused", request=request)
        return httpx2.Response(200, json=openai_chat_json("ok"))

    api = MockAPI(flaky, flaky)
    assert run(make(api, sleeps), [Message.user("hi")]).text == "ok"
    assert state["n"] == 2 and len(sleeps.waits) == 1


def test_openai_compatible_hits_base_url_with_placeholder_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("OPENAI_API_KEY", "DIFFSCOPE_API_KEY", "OPENAI_BASE_URL", "DIFFSCOPE_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    api = MockAPI(openai_chat_json(tool_calls=[("c1", "kl_probe", '{"prompts": []}')]))
    provider = get_provider(
        "openai-compatible/Qwen/Qwen3-8B",
        base_url="http://localhost:8000/v1",
        http_client=api.client(),
    )
    assert provider.name == "openai-compatible/Qwen/Qwen3-8B"
    out = asyncio.run(provider.complete([Message.user("hi")], TOOLS, max_tokens=64))
    assert out.tool_calls[0].arguments == {"prompts": []}
    request = api.requests[0]
    assert str(request.url) == "http://localhost:8000/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer EMPTY"
    assert api.bodies[0]["model"] == "Qwen/Qwen3-8B"
    assert api.bodies[0]["max_tokens"] == 64


def test_parse_retry_after_forms() -> None:
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"Retry-After": "2.5"}) == 2.5
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert 28.0 <= (parse_retry_after({"retry-after": date}, now=now) or 0) <= 30.0
    assert parse_retry_after({"retry-after": "Mon, 01 Jan 2001 00:00:00 GMT"}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_compatible_server_quirks() -> None:
    body = openai_chat_json(tool_calls=[("", "kl_probe", "{}")], finish_reason="stop")
    tool_call = body["choices"][0]["message"]["tool_calls"][0]
    tool_call["id"] = None
    tool_call["function"]["arguments"] = {"prompts": ["decoded"]}
    del body["usage"]
    out = run(make(MockAPI(body)), [Message.user("hi")])
    assert out.stop_reason == "tool_calls"
    assert out.tool_calls[0].id == "call_0"
    assert out.tool_calls[0].arguments == {"prompts": ["decoded"]}
    assert out.usage.total_tokens == 0
