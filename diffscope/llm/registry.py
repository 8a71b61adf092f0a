"""One registry of providers, `PROVIDERS` (a plain dict: name -> `ProviderKind`), and building a
provider from a `provider/model` name, failing early with one clear message.

    openai/gpt-5                  OPENAI_API_KEY (base URL: argument or OPENAI_BASE_URL)
    anthropic/claude-sonnet-4-5   ANTHROPIC_API_KEY (base URL: argument or ANTHROPIC_BASE_URL)
    openai-compatible/qwen3-8b    base URL required: argument, DIFFSCOPE_BASE_URL or
                                  OPENAI_BASE_URL; key optional: argument, DIFFSCOPE_API_KEY or
                                  OPENAI_API_KEY, else the placeholder "EMPTY"

Offline providers need neither key nor base URL and may be named bare: the heuristic investigators
register themselves here as `heuristic` (`heuristic/blackbox`, `heuristic/method`) from the agent
side, so this package imports nothing above it. `scripted` is reserved for the test twin, which is
built directly (`ScriptedProvider(...)`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx2

from diffscope.llm.base import Provider, ProviderError


@dataclass(frozen=True)
class ProviderConfig:
    """A validated provider name with its resolved key and base URL."""

    provider: str
    model: str
    api_key: str
    base_url: str | None

    @property
    def name(self) -> str:
        """The full `provider/model` id (just `provider` for a bare offline name)."""
        return f"{self.provider}/{self.model}" if self.model else self.provider


@dataclass(frozen=True)
class ProviderKind:
    """One entry of `PROVIDERS`: what it is and how to build it.

    `build(config, http_client=..., **kw)` returns the provider; `offline` kinds need no key and no
    base URL, and their name may omit the model part.
    """

    description: str
    build: Callable[..., Provider]
    offline: bool = False


def _openai(
    config: ProviderConfig, *, http_client: httpx2.AsyncClient | None = None, **kw: Any
) -> Provider:
    # The SDKs are imported only here: they take seconds to import and most callers
    # (the scripted twin, the offline investigator) never need them.
    from diffscope.llm.openai_provider import OpenAIProvider

    if config.provider == "openai-compatible":
        kw.setdefault("max_tokens_field", "max_tokens")
        kw.setdefault("key_env", "DIFFSCOPE_API_KEY")
    return OpenAIProvider(
        config.model,
        api_key=config.api_key,
        base_url=config.base_url,
        http_client=http_client,
        name=config.name,
        **kw,
    )


def _anthropic(
    config: ProviderConfig, *, http_client: httpx2.AsyncClient | None = None, **kw: Any
) -> Provider:
    from diffscope.llm.anthropic_provider import AnthropicProvider

    return AnthropicProvider(
        config.model,
        api_key=config.api_key,
        base_url=config.base_url,
        http_client=http_client,
        name=config.name,
        **kw,
    )


PROVIDERS: dict[str, ProviderKind] = {
    "openai": ProviderKind("OpenAI chat completions (OPENAI_API_KEY)", _openai),
    "anthropic": ProviderKind("Anthropic messages (ANTHROPIC_API_KEY)", _anthropic),
    "openai-compatible": ProviderKind(
        "any OpenAI-compatible server: vLLM, Ollama, LM Studio (base URL)", _openai
    ),
}

RESERVED: dict[str, str] = {
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


def _valid() -> str:
    return ", ".join(f"{name} ({kind.description})" for name, kind in PROVIDERS.items())


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
    if provider in RESERVED and provider not in PROVIDERS:
        raise ProviderError(
            f"{provider!r} is reserved for {RESERVED[provider]}; it is not an LLM provider. "
            f"Providers: {_valid()}"
        )
    kind = PROVIDERS.get(provider)
    if kind is not None and kind.offline:
        return ProviderConfig(provider, name, "", None)
    if not sep or not provider or not name:
        raise ProviderError(
            f"model {model!r} must look like 'provider/model', e.g. 'openai/gpt-5', "
            f"'anthropic/claude-sonnet-4-5' or 'openai-compatible/qwen3-8b'. "
            f"Providers: {_valid()}"
        )
    if kind is None:
        raise ProviderError(f"unknown provider {provider!r} in {model!r}. Providers: {_valid()}")

    url = base_url or _first_env(env, BASE_URL_ENV.get(provider, ()))
    if provider == "openai-compatible":
        if not url:
            raise ProviderError(
                f"{model}: an OpenAI-compatible server needs a base URL, e.g. "
                "http://localhost:8000/v1 for vLLM or http://localhost:11434/v1 for Ollama; "
                "pass --base-url or set DIFFSCOPE_BASE_URL (or OPENAI_BASE_URL)"
            )
        key = api_key or _first_env(env, COMPATIBLE_KEY_ENV) or PLACEHOLDER_KEY
        return ProviderConfig(provider, name, key, url)

    key_env = KEY_ENV.get(provider)
    if key_env is None:  # a kind registered from outside: it checks its own key, if any
        return ProviderConfig(provider, name, api_key or "", url)
    found = api_key or _first_env(env, (key_env,))
    if not found:
        raise ProviderError(
            f"{model}: no API key; set the {key_env} environment variable "
            f"(`export {key_env}=...` in the shell that runs diffscope)"
        )
    return ProviderConfig(provider, name, found, url)


def check_provider_ready(
    model: str, *, base_url: str | None = None, api_key: str | None = None
) -> ProviderConfig:
    """Raise a clear `ProviderError` now if `model` could not be used; for CLIs to call early.

    The reserved `scripted` name is not a provider one can build by name and fails here too.
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
    """The provider for a `provider/model` name; keyword arguments go to its builder.

    Useful keywords: `retry=RetryPolicy(...)`, `timeout=` (seconds per request). Everything is
    checked here, before any request: a bad name or missing key raises `ProviderError`.
    """
    config = resolve(model, base_url=base_url, api_key=api_key)
    return PROVIDERS[config.provider].build(config, http_client=http_client, **kw)
