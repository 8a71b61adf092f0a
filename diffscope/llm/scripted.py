"""`ScriptedProvider`: the offline twin of an LLM, for tests (in the style of inspect's mockllm).

A script is a list or iterator of replies, or a callable `(messages, tools) -> reply` (sync or
async). A reply is a `Completion`, a string (plain text), a `ToolCall` or a list of them (tool
calls), or an exception instance (raised, to test error handling). Every request is recorded.

    provider = ScriptedProvider([call("kl_probe", prompts=["hi"]), reply("SCORE: 4")])
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias

from diffscope.llm.base import (
    STOP,
    TOOL_CALLS,
    Completion,
    Message,
    ProviderError,
    ToolCall,
    ToolSpec,
    Usage,
)

Reply: TypeAlias = Completion | str | ToolCall | list[ToolCall] | BaseException
ScriptFunction: TypeAlias = Callable[[list[Message], list[ToolSpec]], Reply | Awaitable[Reply]]


def call(name: str, /, id: str = "", **arguments: Any) -> ToolCall:
    """A well-formed tool call, e.g. `call("kl_probe", prompts=["hi"])`.

    Without an `id` the provider numbers it (`call_1`, `call_2`, ...) when it is answered.
    """
    return ToolCall.of(id, name, arguments)


def bad_call(name: str, raw_arguments: str, /, id: str = "") -> ToolCall:
    """A tool call whose argument text is kept as written (malformed JSON included)."""
    return ToolCall.parse(id, name, raw_arguments)


def reply(text: str = "", *calls: ToolCall, usage: Usage | None = None) -> Completion:
    """A completion with text and optional tool calls."""
    return Completion(
        text=text,
        tool_calls=list(calls),
        usage=usage or Usage(output_tokens=_estimate(text)),
        stop_reason=TOOL_CALLS if calls else STOP,
        model="scripted",
    )


def _estimate(text: str) -> int:
    return max(len(text) // 4, 1) if text else 0


class ScriptExhausted(ProviderError):
    """The script ran out of replies before the agent stopped asking."""


@dataclass
class ScriptedRequest:
    """One request a `ScriptedProvider` received."""

    messages: list[Message]
    tools: list[ToolSpec]
    max_tokens: int
    temperature: float | None


class ScriptedProvider:
    """A provider that answers from a script and records what it was asked.

    Usage is estimated at four characters per token unless a reply carries its own.
    """

    def __init__(
        self,
        script: Iterable[Reply] | ScriptFunction,
        *,
        name: str = "scripted",
        model: str = "scripted",
    ) -> None:
        self.name = name
        self.model = model
        self.requests: list[ScriptedRequest] = []
        self._function: ScriptFunction | None = None
        self._replies: Iterator[Reply] | None = None
        self._ids = 0
        if callable(script) and not isinstance(script, Iterator):
            self._function = script
        else:
            self._replies = iter(script)

    @property
    def calls(self) -> int:
        """How many requests were made."""
        return len(self.requests)

    async def complete(
        self,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        max_tokens: int = 2048,
        temperature: float | None = None,
    ) -> Completion:
        """Record the request and answer with the script's next reply."""
        messages = [m.model_copy(deep=True) for m in messages]
        tools = [t.model_copy(deep=True) for t in tools]
        self.requests.append(ScriptedRequest(messages, tools, max_tokens, temperature))
        answer = await self._next(messages, tools)
        if isinstance(answer, BaseException):
            raise answer
        completion = _completion(answer)
        if completion.usage == Usage():
            completion = completion.model_copy(
                update={"usage": Usage(output_tokens=_estimate(completion.text))}
            )
        input_tokens = sum(_estimate(m.content) for m in messages)
        usage = Usage(
            input_tokens=completion.usage.input_tokens or input_tokens,
            output_tokens=completion.usage.output_tokens,
        )
        calls = [self._numbered(c) for c in completion.tool_calls]
        return completion.model_copy(
            update={"usage": usage, "model": self.model, "tool_calls": calls}
        )

    def _numbered(self, tool_call: ToolCall) -> ToolCall:
        if tool_call.id:
            return tool_call
        self._ids += 1
        return tool_call.model_copy(update={"id": f"call_{self._ids}"})

    async def _next(self, messages: list[Message], tools: list[ToolSpec]) -> Reply:
        if self._function is not None:
            answer = self._function(messages, tools)
            if inspect.isawaitable(answer):
                answer = await answer
            return answer
        assert self._replies is not None
        try:
            return next(self._replies)
        except StopIteration:
            last = messages[-1] if messages else None
            said = f" The last message ({last.role}) was: {last.content[:200]!r}." if last else ""
            raise ScriptExhausted(
                f"{self.name}: the script ran out after {len(self.requests) - 1} replies; "
                f"request {len(self.requests)} had no reply.{said}",
                provider=self.name,
            ) from None


def _completion(answer: Reply) -> Completion:
    if isinstance(answer, Completion):
        return answer.model_copy(deep=True)
    if isinstance(answer, str):
        return reply(answer)
    if isinstance(answer, ToolCall):
        return reply("", answer)
    if isinstance(answer, list) and all(isinstance(c, ToolCall) for c in answer):
        return reply("", *answer)
    raise TypeError(
        "a scripted reply must be a Completion, str, ToolCall, list of ToolCall or an "
        f"exception, got {type(answer).__name__}: {repr(answer)[:200]}"
    )
