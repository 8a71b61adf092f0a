"""Building providers from names: keys, base URLs and the errors that say what to fix."""

from __future__ import annotations

import asyncio

import pytest

from diffscope.llm import (
    PROVIDERS,
    AnthropicProvider,
    Message,
    OpenAIProvider,
    ProviderConfig,
    ProviderError,
    ProviderKind,
    ScriptedProvider,
    check_provider_ready,
    get_provider,
    reply,
)
from diffscope.llm.mock_http import MockAPI, openai_chat_json

ENV_VARS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "DIFFSCOPE_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_BASE_URL",
    "DIFFSCOPE_BASE_URL",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def test_keys_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    openai_provider = get_provider("openai/gpt-5")
    assert isinstance(openai_provider, OpenAIProvider)
    assert openai_provider.name == "openai/gpt-5" and openai_provider.model == "gpt-5"
    assert openai_provider.client.api_key == "sk-env"
    assert openai_provider.client.max_retries == 0
    claude = get_provider("anthropic/claude-sonnet-5")
    assert isinstance(claude, AnthropicProvider)
    assert claude.client.api_key == "sk-ant-env" and claude.client.max_retries == 0
    assert check_provider_ready("openai/gpt-5").api_key == "sk-env"


@pytest.mark.parametrize(
    ("model", "env_var"),
    [("openai/gpt-5", "OPENAI_API_KEY"), ("anthropic/claude-sonnet-4-5", "ANTHROPIC_API_KEY")],
)
def test_missing_key_names_the_env_var(model: str, env_var: str) -> None:
    with pytest.raises(ProviderError, match=f"no API key; set the {env_var} environment"):
        get_provider(model)
    with pytest.raises(ProviderError, match=env_var):
        check_provider_ready(model)


def test_explicit_key_wins() -> None:
    provider = get_provider("openai/gpt-5", api_key="sk-arg")
    assert isinstance(provider, OpenAIProvider) and provider.client.api_key == "sk-arg"


@pytest.mark.parametrize("model", ["gpt-5", "openai/", "/gpt-5", ""])
def test_malformed_name(model: str) -> None:
    with pytest.raises(ProviderError, match="must look like 'provider/model'"):
        check_provider_ready(model)


def test_unknown_provider_lists_valid_ones() -> None:
    with pytest.raises(ProviderError, match="unknown provider 'gemini'") as err:
        get_provider("gemini/pro")
    for name in ("openai", "anthropic", "openai-compatible"):
        assert name in str(err.value)


@pytest.mark.parametrize("model", ["scripted", "scripted/test"])
def test_reserved_names(model: str) -> None:
    with pytest.raises(ProviderError, match="is reserved for"):
        check_provider_ready(model)


def test_registered_offline_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[ProviderConfig] = []

    def build(config: ProviderConfig, **kw: object) -> ScriptedProvider:
        built.append(config)
        return ScriptedProvider([reply("offline")], name=config.name)

    monkeypatch.setitem(PROVIDERS, "offline", ProviderKind("a test provider", build, offline=True))
    assert get_provider("offline").name == "offline"
    assert get_provider("offline/v2", retry=None).name == "offline/v2"
    assert [c.model for c in built] == ["", "v2"]
    assert check_provider_ready("offline/v2").api_key == ""
    with pytest.raises(ProviderError, match=r"offline \(a test provider\)"):
        get_provider("gemini/pro")


def test_every_kind_is_described() -> None:
    assert {"openai", "anthropic", "openai-compatible"} <= set(PROVIDERS)
    for kind in PROVIDERS.values():
        assert isinstance(kind, ProviderKind) and kind.description


def test_openai_compatible_needs_base_url() -> None:
    with pytest.raises(ProviderError, match="needs a base URL.*DIFFSCOPE_BASE_URL"):
        get_provider("openai-compatible/qwen3-8b")


def test_openai_compatible_base_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://other:1/v1")
    monkeypatch.setenv("DIFFSCOPE_BASE_URL", "http://vllm:8000/v1")
    monkeypatch.setenv("DIFFSCOPE_API_KEY", "local-key")
    api = MockAPI(openai_chat_json("hello"))
    provider = get_provider("openai-compatible/qwen3-8b", http_client=api.client())
    out = asyncio.run(provider.complete([Message.user("hi")], []))
    assert out.text == "hello"
    request = api.requests[0]
    assert str(request.url) == "http://vllm:8000/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer local-key"
    assert "tools" not in api.bodies[0]


def test_openai_base_url_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://proxy:9/v1")
    api = MockAPI(openai_chat_json("hello"))
    provider = get_provider("openai/gpt-5", api_key="sk", http_client=api.client())
    asyncio.run(provider.complete([Message.user("hi")], []))
    assert str(api.requests[0].url) == "http://proxy:9/v1/chat/completions"


def test_unmatched_request_is_not_retried() -> None:
    api = MockAPI()
    provider = get_provider("openai/gpt-5", api_key="sk", http_client=api.client())
    with pytest.raises(ProviderError, match="no response queued"):
        asyncio.run(provider.complete([Message.user("hi")], []))
    assert len(api.requests) == 1
