"""The provider-neutral protocol: messages, tool specs and calls, completions, usage, errors.

Every LLM backend (OpenAI, Anthropic, any OpenAI-compatible server, the scripted twin used in
tests) speaks this small vocabulary, so the agent loop never touches an SDK type.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

Role = Literal["system", "user", "assistant", "tool"]

# Normalised stop reasons; a backend's unknown reason is passed through unchanged.
STOP = "stop"
TOOL_CALLS = "tool_calls"
MAX_TOKENS = "max_tokens"
REFUSAL = "refusal"
CONTENT_FILTER = "content_filter"


class ToolSpec(BaseModel):
    """A tool the model may call: its name, a description and a JSON schema of its arguments."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})

    def arguments_schema(self) -> dict[str, Any]:
        """The argument schema, with an empty object schema when none was given."""
        return self.parameters or {"type": "object", "properties": {}}


class ToolCall(BaseModel):
    """One call the model asked for.

    `raw_arguments` is the argument text exactly as the model wrote it. When it is not a JSON
    object, `arguments` is empty and `parse_error` says why, so the loop can tell the model
    instead of crashing.
    """

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    raw_arguments: str = "{}"
    parse_error: str | None = None

    @classmethod
    def parse(cls, id: str, name: str, raw_arguments: str | dict[str, Any] | None) -> ToolCall:
        """Build a call from the model's raw argument text, never raising on bad JSON.

        Some OpenAI-compatible servers send the arguments already decoded; a dict is accepted.
        """
        if isinstance(raw_arguments, dict):
            return cls.of(id, name, raw_arguments)
        raw = raw_arguments if isinstance(raw_arguments, str) else ""
        if not raw.strip():
            return cls(id=id, name=name, arguments={}, raw_arguments=raw)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as err:
            return cls(
                id=id,
                name=name,
                raw_arguments=raw,
                parse_error=f"arguments of {name!r} are not valid JSON ({err}): {raw[:200]!r}",
            )
        if not isinstance(value, dict):
            return cls(
                id=id,
                name=name,
                raw_arguments=raw,
                parse_error=(
                    f"arguments of {name!r} must be a JSON object, got {type(value).__name__}"
                ),
            )
        return cls(id=id, name=name, arguments=value, raw_arguments=raw)

    @classmethod
    def of(cls, id: str, name: str, arguments: dict[str, Any]) -> ToolCall:
        """Build a well-formed call from already-parsed arguments."""
        return cls(id=id, name=name, arguments=arguments, raw_arguments=json.dumps(arguments))


class Message(BaseModel):
    """One turn of a conversation.

    Assistant turns may carry `tool_calls`; a tool turn answers one call through `tool_call_id`
    and marks failures with `is_error`.
    """

    role: Role
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None
    is_error: bool = False

    @classmethod
    def system(cls, content: str) -> Message:
        """A system prompt."""
        return cls(role="system", content=content)

    @classmethod
    def user(cls, content: str) -> Message:
        """A user turn."""
        return cls(role="user", content=content)

    @classmethod
    def assistant(cls, content: str = "", tool_calls: list[ToolCall] | None = None) -> Message:
        """An assistant turn, optionally with tool calls."""
        return cls(role="assistant", content=content, tool_calls=list(tool_calls or []))

    @classmethod
    def tool(
        cls, tool_call_id: str, content: str, *, name: str | None = None, is_error: bool = False
    ) -> Message:
        """The result of one tool call."""
        return cls(
            role="tool", content=content, tool_call_id=tool_call_id, name=name, is_error=is_error
        )


class Usage(BaseModel):
    """Tokens spent by one or more requests."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class Completion(BaseModel):
    """What the model answered: text, tool calls, usage and why it stopped."""

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    stop_reason: str = STOP
    model: str = ""

    def message(self) -> Message:
        """This completion as an assistant message to append to the conversation."""
        return Message.assistant(self.text, self.tool_calls)


@runtime_checkable
class Provider(Protocol):
    """An LLM backend that completes a conversation with optional native tool calling."""

    name: str

    async def complete(
        self,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        max_tokens: int = 2048,
        temperature: float | None = None,
    ) -> Completion:
        """Answer the conversation; raise `ProviderError` when the backend cannot."""
        ...


class ProviderError(Exception):
    """A provider failed in a way retrying will not fix (bad key, bad request, gave up).

    The message is meant for people: it says what went wrong and, where it can, what to do.
    """

    retryable: bool = False

    def __init__(
        self, message: str, *, provider: str | None = None, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status_code = status_code


class TransientProviderError(ProviderError):
    """A failure worth retrying: rate limit, overload, 5xx, timeout or lost connection.

    `retry_after` holds the server's requested wait in seconds, when it sent one.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status_code=status_code)
        self.retry_after = retry_after


def is_retryable(error: BaseException) -> bool:
    """Whether an error from a provider is transient and worth another try."""
    return isinstance(error, ProviderError) and error.retryable
