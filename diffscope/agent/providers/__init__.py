"""LLM providers behind one small protocol: OpenAI, Anthropic, OpenAI-compatible, scripted.

`get_provider("openai/gpt-5")` builds a provider from a name; `ScriptedProvider` is the offline
twin for tests. Everything speaks `Message`, `ToolSpec`, `ToolCall` and `Completion`.
The SDK adapters (`OpenAIProvider`, `AnthropicProvider`) are imported on first use, since the
SDKs take seconds to import.
"""

from typing import Any

from diffscope.agent.providers.base import (
    Completion,
    Message,
    Provider,
    ProviderError,
    ToolCall,
    ToolSpec,
    TransientProviderError,
    Usage,
    is_retryable,
)
from diffscope.agent.providers.registry import (
    PROVIDERS,
    ProviderConfig,
    check_provider_ready,
    get_provider,
)
from diffscope.agent.providers.retry import RetryPolicy, parse_retry_after, with_retries
from diffscope.agent.providers.scripted import (
    ScriptedProvider,
    ScriptedRequest,
    ScriptExhausted,
    bad_call,
    call,
    reply,
)

__all__ = [
    "PROVIDERS",
    "AnthropicProvider",
    "Completion",
    "Message",
    "OpenAIProvider",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "RetryPolicy",
    "ScriptExhausted",
    "ScriptedProvider",
    "ScriptedRequest",
    "ToolCall",
    "ToolSpec",
    "TransientProviderError",
    "Usage",
    "bad_call",
    "call",
    "check_provider_ready",
    "get_provider",
    "is_retryable",
    "parse_retry_after",
    "reply",
    "with_retries",
]


def __getattr__(name: str) -> Any:
    if name == "OpenAIProvider":
        from diffscope.agent.providers.openai_provider import OpenAIProvider

        return OpenAIProvider
    if name == "AnthropicProvider":
        from diffscope.agent.providers.anthropic_provider import AnthropicProvider

        return AnthropicProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
