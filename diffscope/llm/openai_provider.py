"""The OpenAI chat-completions adapter, also used for OpenAI-compatible servers.

Tools go out as `{"type": "function", "function": {...}}`; tool results come back as role "tool"
messages carrying `tool_call_id`. The same adapter drives vLLM, Ollama, LM Studio or any server
that speaks the chat-completions wire format, through `base_url`.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx2
import openai

from diffscope.llm.base import (
    CONTENT_FILTER,
    MAX_TOKENS,
    REFUSAL,
    STOP,
    TOOL_CALLS,
    Completion,
    Message,
    ProviderError,
    ToolCall,
    ToolSpec,
    Usage,
)
from diffscope.llm.retry import RetryPolicy
from diffscope.llm.sdk import SDKProvider

_FINISH_REASONS = {
    "stop": STOP,
    "tool_calls": TOOL_CALLS,
    "function_call": TOOL_CALLS,
    "length": MAX_TOKENS,
    "content_filter": CONTENT_FILTER,
}


def _error_detail(err: openai.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(inner, str):
            return inner
    return str(body) if body else err.message


class OpenAIProvider(SDKProvider):
    """Chat completions with native function calling over `openai.AsyncOpenAI`.

    `name` is the full model id (e.g. "openai/gpt-5"); `model` is what the API gets.
    `max_tokens_field` is "max_completion_tokens" for OpenAI and "max_tokens" for most
    OpenAI-compatible servers.
    """

    sdk = openai
    response_kind = "chat completion"

    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str | None = None,
        http_client: httpx2.AsyncClient | None = None,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 120.0,
        max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens",
        key_env: str | None = "OPENAI_API_KEY",
    ) -> None:
        super().__init__(model, name or f"openai/{model}", retry, key_env)
        self.max_tokens_field = max_tokens_field
        self.client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            http_client=http_client,
            timeout=timeout,
            max_retries=0,
        )

    def request(
        self,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        max_tokens: int = 2048,
        temperature: float | None = None,
    ) -> dict[str, Any]:
        """The keyword arguments of `chat.completions.create` for this conversation."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [self._message(m) for m in messages],
            self.max_tokens_field: max_tokens,
        }
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.arguments_schema(),
                    },
                }
                for t in tools
            ]
        if temperature is not None:
            body["temperature"] = temperature
        return body

    def _message(self, message: Message) -> dict[str, Any]:
        if message.role == "tool":
            if not message.tool_call_id:
                raise ProviderError(
                    f"{self.name}: a tool message needs the tool_call_id it answers",
                    provider=self.name,
                )
            content = message.content
            if message.is_error and not content.lower().startswith("error"):
                content = f"Error: {content}"
            return {"role": "tool", "tool_call_id": message.tool_call_id, "content": content}
        out: dict[str, Any] = {"role": message.role, "content": message.content}
        if message.name and message.role in ("user", "system", "assistant"):
            out["name"] = message.name
        if message.role == "assistant" and message.tool_calls:
            out["content"] = message.content or None
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.raw_arguments},
                }
                for call in message.tool_calls
            ]
        return out

    async def create(self, body: dict[str, Any]) -> Any:
        return await self.client.chat.completions.create(**body)

    def error_detail(self, err: openai.APIStatusError) -> str:
        return _error_detail(err)

    def parse(self, response: Any) -> Completion:
        """A `Completion` from a `ChatCompletion`."""
        if not response.choices:
            raise ProviderError(f"{self.name}: the response had no choices", provider=self.name)
        choice = response.choices[0]
        message = choice.message
        calls: list[ToolCall] = []
        for index, raw in enumerate(message.tool_calls or []):
            call_id = getattr(raw, "id", None) or f"call_{index}"
            function = getattr(raw, "function", None)
            if function is not None:
                calls.append(ToolCall.parse(call_id, function.name, function.arguments))
                continue
            custom = getattr(raw, "custom", None)
            calls.append(
                ToolCall(
                    id=call_id,
                    name=getattr(custom, "name", "unknown"),
                    raw_arguments=str(getattr(custom, "input", "")),
                    parse_error="only function tools are supported, not custom tools",
                )
            )
        text = message.content or ""
        stop = _FINISH_REASONS.get(choice.finish_reason, str(choice.finish_reason))
        if not text and getattr(message, "refusal", None):
            text, stop = message.refusal, REFUSAL
        if calls and stop == STOP:
            stop = TOOL_CALLS
        usage = response.usage
        return Completion(
            text=text,
            tool_calls=calls,
            usage=Usage(
                input_tokens=usage.prompt_tokens if usage else 0,
                output_tokens=usage.completion_tokens if usage else 0,
            ),
            stop_reason=stop,
            model=response.model or self.model,
        )
