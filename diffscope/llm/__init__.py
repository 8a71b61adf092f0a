"""LLM access at the base: providers behind one small protocol, the registry and the answer model.

`get_provider("openai/gpt-5")` builds a provider from a name through the `PROVIDERS` registry
(OpenAI, Anthropic, OpenAI-compatible; offline providers such as the heuristic investigators
register themselves from above); `ScriptedProvider` is the offline twin for tests. Everything
speaks `Message`, `ToolSpec`, `ToolCall`, `Completion` and `Usage`; an investigator's answer is a
`Hypothesis`. This package imports nothing else of diffscope: everything above may import it.
The SDK adapters (`OpenAIProvider`, `AnthropicProvider`) are imported on first use, since the
SDKs take seconds to import.
"""

from typing import Any

from diffscope.llm.base import (
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
from diffscope.llm.hypothesis import Claim, Hypothesis
from diffscope.llm.registry import (
    PROVIDERS,
    ProviderConfig,
    ProviderKind,
    check_provider_ready,
    get_provider,
)
from diffscope.llm.retry import RetryPolicy, parse_retry_after, with_retries
from diffscope.llm.scripted import (
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
    "Claim",
    "Completion",
    "Hypothesis",
    "Message",
    "OpenAIProvider",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "ProviderKind",
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
        from diffscope.llm.openai_provider import OpenAIProvider

        return OpenAIProvider
    if name == "AnthropicProvider":
        from diffscope.llm.anthropic_provider import AnthropicProvider

        return AnthropicProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
