"""An offline HTTP endpoint for driving the real SDK clients in tests.

`MockAPI` answers requests from a queue through `httpx2.MockTransport` and records each request;
the builders give canned bodies in the exact wire formats of OpenAI chat completions and
Anthropic messages.

    api = MockAPI(openai_chat_json(tool_calls=[("call_1", "kl_probe", '{"k": 5}')]))
    provider = get_provider("openai/gpt-5", api_key="sk-test", http_client=api.client())
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import httpx2

Canned: TypeAlias = httpx2.Response | dict[str, Any] | Callable[[httpx2.Request], httpx2.Response]


class MockAPI:
    """Answers each request with the next queued response and keeps every request.

    A queued dict is sent as a 200 JSON body; a callable gets the request and returns the
    response. Running out of responses answers HTTP 418 (not retried) with a message saying so.
    """

    def __init__(self, *responses: Canned) -> None:
        self.queue: list[Canned] = list(responses)
        self.requests: list[httpx2.Request] = []

    def add(self, *responses: Canned) -> MockAPI:
        """Queue more responses."""
        self.queue.extend(responses)
        return self

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        """The `httpx2.MockTransport` handler."""
        self.requests.append(request)
        if not self.queue:
            return httpx2.Response(
                418,
                json={"error": {"message": f"MockAPI: no response queued for {request.url}"}},
            )
        canned = self.queue.pop(0)
        if isinstance(canned, httpx2.Response):
            return canned
        if isinstance(canned, dict):
            return httpx2.Response(200, json=canned)
        return canned(request)

    def client(self) -> httpx2.AsyncClient:
        """An `httpx2.AsyncClient` whose transport is this endpoint, for `http_client=`."""
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self.handler))

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the requests received, in order."""
        return [json.loads(r.content) if r.content else {} for r in self.requests]


def openai_chat_json(
    text: str | None = None,
    *,
    tool_calls: list[tuple[str, str, str]] | None = None,
    finish_reason: str | None = None,
    model: str = "gpt-test",
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
) -> dict[str, Any]:
    """A chat.completion body; `tool_calls` are `(id, name, raw JSON arguments)`."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls:
        message["tool_calls"] = [
            {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}
            for id_, name, args in tool_calls
        ]
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason or ("tool_calls" if tool_calls else "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def anthropic_message_json(
    text: str | None = None,
    *,
    tool_uses: list[tuple[str, str, dict[str, Any]]] | None = None,
    stop_reason: str | None = None,
    model: str = "claude-test",
    input_tokens: int = 10,
    output_tokens: int = 5,
) -> dict[str, Any]:
    """A messages body; `tool_uses` are `(id, name, input object)`."""
    content: list[dict[str, Any]] = []
    if text:
        content.append({"type": "text", "text": text})
    for id_, name, arguments in tool_uses or []:
        content.append({"type": "tool_use", "id": id_, "name": name, "input": arguments})
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason or ("tool_use" if tool_uses else "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def error_response(
    status: int,
    message: str = "error",
    *,
    kind: str = "api_error",
    headers: Mapping[str, str] | None = None,
    anthropic: bool = False,
) -> httpx2.Response:
    """An error response as OpenAI (default) or Anthropic (`anthropic=True`) sends it."""
    if anthropic:
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return httpx2.Response(status, json=body, headers=dict(headers or {}))
