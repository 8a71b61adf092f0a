"""Building a provider from a `provider/model` name, failing early with one clear message.

    openai/gpt-5                  OPENAI_API_KEY (base URL: argument or OPENAI_BASE_URL)
    anthropic/claude-sonnet-4-5   ANTHROPIC_API_KEY (base URL: argument or ANTHROPIC_BASE_URL)
    openai-compatible/qwen3-8b    base URL required: argument, DIFFSCOPE_BASE_URL or
                                  OPENAI_BASE_URL; key optional: argument, DIFFSCOPE_API_KEY or
                                  OPENAI_API_KEY, else the placeholder "EMPTY"

`heuristic` and `scripted` are reserved for the offline investigator and the test twin, which are
built elsewhere, not here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx2

from diffscope.agent.providers.base import Provider, ProviderError

PROVIDERS: dict[str, str] = {
    "openai": "OpenAI chat completions (OPENAI_API_KEY)",
    "anthropic": "Anthropic messages (ANTHROPIC_API_KEY)",
    "openai-compatible": "any OpenAI-compatible server: vLLM, Ollama, LM Studio (base URL)",
}

RESERVED: dict[str, str] = {
    "heuristic": "the offline heuristic investigator, which needs no LLM provider",
    "scripted": "the scripted test twin; build ScriptedProvider(...) directly",
}

KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
BASE_URL_ENV = {
    "openai": ("OPENAI_BASE_URL",),
    "anthropic": ("ANTHROPIC_BASE_URL",),
    "openai-compatible": ("DIFFSCOPE_BASE_URL", "OPENAI_BASE_URL"),
}
COMPATIBLE_KEY_ENV = ("DIFFSCOPE_API_KEY", "OPENAI_API_KEY")
PLACEHOLDER_KEY = "EMPTY"


@dataclass(frozen=True)
class ProviderConfig:
    """A validated provider name with its resolved key and base URL."""

    provider: str
    model: str
    api_key: str
    base_url: str | None

    @property
    def name(self) -> str:
        """The full `provider/model` id."""
        return f"{self.provider}/{self.model}"


def _valid() -> str:
    return ", ".join(f"{name} ({what})" for name, what in PROVIDERS.items())


def _first_env(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def resolve(
    model: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ProviderConfig:
    """Validate a `provider/model` name and find its key and base URL, without any network.

    Raises one `ProviderError` that says what to fix: the name's shape, an unknown provider
    (listing the valid ones), a missing key (naming the env var) or a missing base URL.
    """
    env = os.environ if env is None else env
    provider, sep, name = model.strip().partition("/")
    provider = provider.strip().lower()
    name = name.strip()
    if provider in RESERVED:
        raise ProviderError(
            f"{provider!r} is reserved for {RESERVED[provider]}; it is not an LLM provider. "
            f"LLM providers: {_valid()}"
        )
    if not sep or not provider or not name:
        raise ProviderError(
            f"model {model!r} must look like 'provider/model', e.g. 'openai/gpt-5', "
            f"'anthropic/claude-sonnet-4-5' or 'openai-compatible/qwen3-8b'. "
            f"Providers: {_valid()}"
        )
    if provider not in PROVIDERS:
        raise ProviderError(f"unknown provider {provider!r} in {model!r}. Providers: {_valid()}")

    url = base_url or _first_env(env, BASE_URL_ENV[provider])
    if provider == "openai-compatible":
        if not url:
            raise ProviderError(
                f"{model}: an OpenAI-compatible server needs a base URL, e.g. "
                "http://localhost:8000/v1 for vLLM or http://localhost:11434/v1 for Ollama; "
                "pass --base-url or set DIFFSCOPE_BASE_URL (or OPENAI_BASE_URL)"
            )
        key = api_key or _first_env(env, COMPATIBLE_KEY_ENV) or PLACEHOLDER_KEY
        return ProviderConfig(provider, name, key, url)

    key_env = KEY_ENV[provider]
    key = api_key or _first_env(env, (key_env,))
    if not key:
        raise ProviderError(
            f"{model}: no API key; set the {key_env} environment variable (or pass api_key=...)"
        )
    return ProviderConfig(provider, name, key, url)


def check_provider_ready(
    model: str, *, base_url: str | None = None, api_key: str | None = None
) -> ProviderConfig:
    """Raise a clear `ProviderError` now if `model` could not be used; for CLIs to call early.

    Reserved offline names (`heuristic`, `scripted`) are not LLM providers and fail here too.
    """
    return resolve(model, base_url=base_url, api_key=api_key)


def get_provider(
    model: str,
    *,
    base_url: str | None = None,
    http_client: httpx2.AsyncClient | None = None,
    api_key: str | None = None,
    **kw: Any,
) -> Provider:
    """The provider for a `provider/model` name; keyword arguments go to its constructor.

    Useful keywords: `retry=RetryPolicy(...)`, `timeout=` (seconds per request). Everything is
    checked here, before any request: a bad name or missing key raises `ProviderError`.
    """
    config = resolve(model, base_url=base_url, api_key=api_key)
    # The SDKs are imported only here: they take seconds to import and most callers
    # (the scripted twin, the offline investigator) never need them.
    if config.provider == "anthropic":
        from diffscope.agent.providers.anthropic_provider import AnthropicProvider

        return AnthropicProvider(
            config.model,
            api_key=config.api_key,
            base_url=config.base_url,
            http_client=http_client,
            name=config.name,
            **kw,
        )
    if config.provider == "openai-compatible":
        kw.setdefault("max_tokens_field", "max_tokens")
        kw.setdefault("key_env", "DIFFSCOPE_API_KEY")
    from diffscope.agent.providers.openai_provider import OpenAIProvider

    return OpenAIProvider(
        config.model,
        api_key=config.api_key,
        base_url=config.base_url,
        http_client=http_client,
        name=config.name,
        **kw,
    )
