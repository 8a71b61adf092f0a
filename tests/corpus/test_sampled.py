"""The self-sampled corpus: its prompt mix, determinism, cache (keyed by the base fingerprint and the
config), spec parsing, and the default-corpus choice of the workspace for toy and other pairs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from diffscope.corpus.files import resolve_corpus
from diffscope.corpus.sampled import (
    SampleConfig,
    cache_path,
    is_sampled,
    parse_source,
    prompts,
    sample_corpus,
)
from diffscope.workspace import PairSpec, corpus_source


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache root, so the cache assertions never see another run's entries."""
    monkeypatch.setenv("DIFFSCOPE_HOME", str(tmp_path))
    return tmp_path


class FakeModel:
    """A deterministic stand-in for the base model's sampler that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[str, ...], int]] = []

    def __call__(self, batch: Sequence[str], seed: int) -> list[str]:
        self.calls.append((tuple(batch), seed))
        return [f" reply {seed} {len(p)}" for p in batch]


def test_prompts_alternate_openings_and_requests_in_a_seeded_order() -> None:
    items = prompts(SampleConfig(n_docs=10, seed=3))
    assert [chat for _, chat in items] == [False, True] * 5
    assert items == prompts(SampleConfig(n_docs=10, seed=3))
    assert items != prompts(SampleConfig(n_docs=10, seed=4))
    assert len({p for p, _ in items}) == 10


def test_sampling_is_cached_by_fingerprint_and_config(home: Path) -> None:
    config = SampleConfig(n_docs=6, batch_size=4, seed=11)
    fake = FakeModel()
    first = sample_corpus(fake, "fp-a", config, progress=False)
    assert len(first) == 6 and all(" reply " in t for t in first)
    assert [len(batch) for batch, _ in fake.calls] == [4, 2]  # batches of openings and requests
    assert len({seed for _, seed in fake.calls}) == 2
    assert cache_path("fp-a", config).is_file()
    assert cache_path("fp-a", config).parent == home / "corpus"
    again = FakeModel()
    assert sample_corpus(again, "fp-a", config, progress=False) == first
    assert again.calls == []  # served from the cache
    other = FakeModel()
    sample_corpus(other, "fp-b", config, progress=False)  # other base weights: sampled anew
    assert other.calls
    assert cache_path("fp-a", config) != cache_path("fp-a", config.model_copy(update={"seed": 12}))


def test_documents_start_with_the_rendered_prompt(home: Path) -> None:
    config = SampleConfig(n_docs=4, seed=5)
    texts = sample_corpus(
        FakeModel(), "fp-render", config, render=lambda p, c: f"[{c}]{p}", progress=False
    )
    assert sorted(t.split("]")[0] for t in texts) == ["[False", "[False", "[True", "[True"]


def test_source_parsing() -> None:
    assert parse_source("sampled") is None and parse_source("sampled:64") == 64
    assert is_sampled("sampled:8") and not is_sampled("world") and not is_sampled("sampled.txt")
    for bad in ("sampled:", "sampled:1", "sampled:x"):
        with pytest.raises(ValueError, match="sampled:N"):
            parse_source(bad)
    with pytest.raises(ValueError, match="sampled from a pair's base model"):
        resolve_corpus("sampled")


def test_default_corpus_is_world_for_the_toy_zoo_and_sampled_elsewhere() -> None:
    toy = PairSpec(organism="sea_topic")
    assert corpus_source(toy) == "world"
    other = PairSpec(base="base.gguf", adapter="lora")
    assert corpus_source(other, toy=False) == "sampled"
    assert corpus_source(other, "my.jsonl", toy=False) == "my.jsonl"
    given = PairSpec(base="base.gguf", adapter="lora", corpus="world")
    assert corpus_source(given, toy=False) == "world"
