"""What the SDK adapters share: one create call wrapped in our retries (the SDK's own are off), the
SDK's errors mapped to `ProviderError` / `TransientProviderError`, and closing the client. The
OpenAI and Anthropic SDKs name their exception classes alike, so one mapping serves both."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from diffscope.llm.base import (
    Completion,
    Message,
    ProviderError,
    ToolSpec,
    TransientProviderError,
)
from diffscope.llm.retry import RetryPolicy, error_from_status, with_retries


class SDKProvider(ABC):
    """Base of the SDK adapters. Subclasses set `sdk` (the SDK module), `response_kind` (what a
    valid answer is called, for error messages) and `client`, and implement `request`, `create`,
    `parse` and `error_detail`."""

    sdk: Any
    response_kind: str
    client: Any

    def __init__(self, model: str, name: str, retry: RetryPolicy | None, key_env: str | None):
        self.model = model
        self.name = name
        self.retry = retry or RetryPolicy()
        self.key_env = key_env

    async def aclose(self) -> None:
        """Close the underlying HTTP client."""
        await self.client.close()

    @abstractmethod
    def request(
        self,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        max_tokens: int = 2048,
        temperature: float | None = None,
    ) -> dict[str, Any]:
        """The keyword arguments of the SDK's create call for this conversation."""

    @abstractmethod
    async def create(self, body: dict[str, Any]) -> Any:
        """One call of the SDK (no retries here)."""

    @abstractmethod
    def parse(self, response: Any) -> Completion:
        """A `Completion` from the SDK's response."""

    @abstractmethod
    def error_detail(self, err: Any) -> str:
        """The human-readable message inside an API error body."""

    async def complete(
        self,
        messages: list[Message],
        tools: list[ToolSpec],
        *,
        max_tokens: int = 2048,
        temperature: float | None = None,
    ) -> Completion:
        """Send the conversation, retrying transient failures, and parse the answer."""
        body = self.request(messages, tools, max_tokens=max_tokens, temperature=temperature)
        response = await with_retries(lambda: self._send(body), self.retry)
        return self.parse(response)

    async def _send(self, body: dict[str, Any]) -> Any:
        sdk = self.sdk
        try:
            return await self.create(body)
        except sdk.APIStatusError as err:
            raise error_from_status(
                self.name,
                err.status_code,
                self.error_detail(err),
                err.response.headers,
                key_env=self.key_env,
            ) from err
        except sdk.APITimeoutError as err:
            raise TransientProviderError(
                f"{self.name}: request timed out", provider=self.name
            ) from err
        except sdk.APIConnectionError as err:
            raise TransientProviderError(
                f"{self.name}: connection failed ({err.__cause__ or err})", provider=self.name
            ) from err
        except sdk.APIResponseValidationError as err:
            raise ProviderError(
                f"{self.name}: the server sent a response that is not a {self.response_kind}",
                provider=self.name,
            ) from err
