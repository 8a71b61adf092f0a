"""The Anthropic messages adapter with native tool use.

System prompts travel apart from the turns; assistant tool calls are `tool_use` blocks and their
results `tool_result` blocks (with `is_error`) inside a user turn. Consecutive tool results, and
any user text right after them, are merged into one user message as the API requires.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx2

from diffscope.llm.base import (
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

_STOP_REASONS = {
    "end_turn": STOP,
    "stop_sequence": STOP,
    "tool_use": TOOL_CALLS,
    "max_tokens": MAX_TOKENS,
    "refusal": REFUSAL,
}


def _error_detail(err: anthropic.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            kind = inner.get("type")
            return f"{kind}: {inner['message']}" if kind else inner["message"]
    return str(body) if body else err.message


class AnthropicProvider(SDKProvider):
    """Claude through `anthropic.AsyncAnthropic` messages with native tool use.

    `name` is the full model id (e.g. "anthropic/claude-sonnet-4-5"). The installed SDK has no
    `temperature` argument, so a temperature, when given, is sent through `extra_body`.
    """

    sdk = anthropic
    response_kind = "message"

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
        key_env: str | None = "ANTHROPIC_API_KEY",
    ) -> None:
        super().__init__(model, name or f"anthropic/{model}", retry, key_env)
        self.client = anthropic.AsyncAnthropic(
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
        """The keyword arguments of `messages.create` for this conversation."""
        system = "\n\n".join(m.content for m in messages if m.role == "system" and m.content)
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "messages": self.turns(messages),
        }
        if system:
            body["system"] = system
        if tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.arguments_schema()}
                for t in tools
            ]
        if temperature is not None:
            body["extra_body"] = {"temperature": temperature}
        return body

    def turns(self, messages: list[Message]) -> list[dict[str, Any]]:
        """The non-system messages as alternating user/assistant turns of content blocks."""
        turns: list[dict[str, Any]] = []
        for message in messages:
            if message.role == "system":
                continue
            role = "assistant" if message.role == "assistant" else "user"
            blocks = self._blocks(message)
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"].extend(blocks)
            else:
                turns.append({"role": role, "content": blocks})
        for turn in turns:
            if turn["role"] == "user":
                # Tool results must lead the user turn that follows the tool calls.
                turn["content"].sort(key=lambda block: block["type"] != "tool_result")
            if not turn["content"]:
                turn["content"] = [{"type": "text", "text": "(empty)"}]
        return turns

    def _blocks(self, message: Message) -> list[dict[str, Any]]:
        if message.role == "tool":
            if not message.tool_call_id:
                raise ProviderError(
                    f"{self.name}: a tool message needs the tool_call_id it answers",
                    provider=self.name,
                )
            return [
                {
                    "type": "tool_result",
                    "tool_use_id": message.tool_call_id,
                    "content": message.content or "(no output)",
                    "is_error": message.is_error,
                }
            ]
        blocks: list[dict[str, Any]] = []
        if message.content:
            blocks.append({"type": "text", "text": message.content})
        if message.role == "assistant":
            blocks.extend(
                {
                    "type": "tool_use",
                    "id": call.id,
                    "name": call.name,
                    "input": call.arguments if call.parse_error is None else {},
                }
                for call in message.tool_calls
            )
        return blocks

    async def create(self, body: dict[str, Any]) -> Any:
        return await self.client.messages.create(**body)

    def error_detail(self, err: anthropic.APIStatusError) -> str:
        return _error_detail(err)

    def parse(self, response: Any) -> Completion:
        """A `Completion` from an Anthropic `Message`."""
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in response.content:
            kind = getattr(block, "type", None)
            if kind == "text":
                texts.append(block.text)
            elif kind == "tool_use":
                arguments = block.input
                if isinstance(arguments, dict):
                    calls.append(
                        ToolCall(
                            id=block.id,
                            name=block.name,
                            arguments=dict(arguments),
                            raw_arguments=json.dumps(arguments),
                        )
                    )
                else:
                    calls.append(
                        ToolCall(
                            id=block.id,
                            name=block.name,
                            raw_arguments=json.dumps(arguments),
                            parse_error=f"arguments of {block.name!r} must be a JSON object",
                        )
                    )
        usage = response.usage
        input_tokens = usage.input_tokens + (usage.cache_creation_input_tokens or 0)
        input_tokens += usage.cache_read_input_tokens or 0
        reason = response.stop_reason or "end_turn"
        return Completion(
            text="\n".join(t for t in texts if t),
            tool_calls=calls,
            usage=Usage(input_tokens=input_tokens, output_tokens=usage.output_tokens),
            stop_reason=_STOP_REASONS.get(reason, reason),
            model=response.model or self.model,
        )
