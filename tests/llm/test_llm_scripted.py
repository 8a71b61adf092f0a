"""The scripted provider: replies from lists, generators and callables; records requests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from diffscope.llm import (
    Completion,
    Message,
    Provider,
    ProviderError,
    ScriptedProvider,
    ScriptExhausted,
    ToolSpec,
    Usage,
    bad_call,
    call,
    reply,
)

TOOLS = [ToolSpec(name="kl_probe", description="KL per token.")]


def ask(provider: ScriptedProvider, text: str = "go", **kw: Any) -> Completion:
    return asyncio.run(provider.complete([Message.user(text)], TOOLS, **kw))


def test_list_script_and_recording() -> None:
    provider = ScriptedProvider(
        [call("kl_probe", prompts=["hi"]), [call("a"), call("b", id="mine")], "SCORE: 4"]
    )
    assert isinstance(provider, Provider)
    first = ask(provider, "start", max_tokens=100, temperature=0.5)
    assert first.stop_reason == "tool_calls"
    assert first.tool_calls[0].id == "call_1"
    assert first.tool_calls[0].arguments == {"prompts": ["hi"]}
    assert first.tool_calls[0].raw_arguments == '{"prompts": ["hi"]}'
    second = ask(provider)
    assert [c.id for c in second.tool_calls] == ["call_2", "mine"]
    third = ask(provider)
    assert third.text == "SCORE: 4" and third.stop_reason == "stop" and not third.tool_calls
    assert third.usage.output_tokens > 0 and third.usage.input_tokens > 0
    assert provider.calls == 3
    assert provider.requests[0].messages == [Message.user("start")]
    assert provider.requests[0].tools == TOOLS
    assert (provider.requests[0].max_tokens, provider.requests[0].temperature) == (100, 0.5)


def test_exhausted_script_raises_clearly() -> None:
    provider = ScriptedProvider(["only reply"])
    ask(provider)
    with pytest.raises(ScriptExhausted, match="ran out after 1 replies; request 2") as err:
        ask(provider, "one more?")
    assert isinstance(err.value, ProviderError)
    assert "one more?" in str(err.value)


def test_generator_script() -> None:
    def script() -> Iterator[str | Completion]:
        yield "thinking"
        yield reply("done", call("kl_probe"), usage=Usage(input_tokens=3, output_tokens=2))

    provider = ScriptedProvider(script())
    assert ask(provider).text == "thinking"
    last = ask(provider)
    assert last.text == "done" and last.tool_calls[0].name == "kl_probe"
    assert last.usage == Usage(input_tokens=3, output_tokens=2)
    with pytest.raises(ScriptExhausted):
        ask(provider)


def test_callable_script_sees_conversation() -> None:
    seen: list[int] = []

    def respond(messages: list[Message], tools: list[ToolSpec]) -> str:
        seen.append(len(messages))
        return f"{messages[-1].content} / {len(tools)} tools"

    provider = ScriptedProvider(respond)
    assert ask(provider, "hello").text == "hello / 1 tools"

    async def respond_async(messages: list[Message], tools: list[ToolSpec]) -> Completion:
        return reply("async")

    assert ask(ScriptedProvider(respond_async)).text == "async"
    assert seen == [1]


def test_malformed_call_and_raised_error() -> None:
    provider = ScriptedProvider(
        [bad_call("kl_probe", '{"prompts": [1,'), ProviderError("quota exceeded")]
    )
    broken = ask(provider).tool_calls[0]
    assert broken.parse_error and broken.raw_arguments == '{"prompts": [1,'
    assert broken.id == "call_1"
    with pytest.raises(ProviderError, match="quota exceeded"):
        ask(provider)


def test_requests_are_snapshots() -> None:
    provider = ScriptedProvider(["a"])
    messages = [Message.user("original")]
    asyncio.run(provider.complete(messages, TOOLS))
    messages[0].content = "mutated"
    assert provider.requests[0].messages[0].content == "original"


def test_usage_adds_and_completion_message() -> None:
    assert Usage(input_tokens=1, output_tokens=2) + Usage(input_tokens=3) == Usage(
        input_tokens=4, output_tokens=2
    )
    assert sum([Usage(input_tokens=1), Usage(output_tokens=1)], Usage()).total_tokens == 2
    done = reply("text", call("x", id="c9"))
    assert done.message() == Message.assistant("text", done.tool_calls)
