"""The default probe corpus of a pair outside the toy zoo: ordinary text the base model writes itself.

The world corpus fits only the toy zoo's tokenizer and vocabulary; under a real model's tokenizer
it is odd text at best. So for any other pair the default corpus is the base model's own samples:
continuations of seeded neutral openings ("The history of the town", ...) and replies to neutral
chat requests ("How do I make a cup of tea?", rendered through the model's chat template when it
has one). Sampling is seeded and batched in a fixed way, so the same base weights and settings give
the same documents; they are cached as JSON under `$DIFFSCOPE_HOME/corpus/`, keyed by the base
weights' fingerprint, the `SampleConfig` and a format version.

This module holds no model code: the caller passes a `generate(texts, seed)` function and a
`render(prompt, chat)` function (the diffing layer passes the base model's own sampler and chat
template, `diffing.probe`).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from diffscope import paths
from diffscope import progress as pg

SAMPLED = "sampled"
"""The corpus source name: `sampled` (the default size) or `sampled:N` (N documents)."""
FORMAT = 2  # 2: openings and chat requests of a batch sampled together

OPENINGS = (
    "The history of the town",
    "Yesterday morning I walked",
    "Here is a short story about a family.",
    "The best way to learn a new skill",
    "Scientists have long wondered",
    "My favourite place in the city",
    "The recipe starts with",
    "When the train finally arrived,",
    "A good teacher",
    "The report describes",
    "On weekends, people often",
    "The river runs through",
    "Once upon a time, there was",
    "The new library opened",
    "In the garden behind the house",
    "Most computers today",
    "The weather this week",
    "Dear friend, I am writing to",
    "The museum's oldest painting",
    "Every summer, the village",
    "An important part of good health",
    "The meeting began with",
    "Music has always been",
    "The old bridge",
)

REQUESTS = (
    "Tell me about your favourite book.",
    "How do I make a cup of tea?",
    "Explain how rain forms, simply.",
    "Give me three tips for a job interview.",
    "What should I pack for a weekend trip?",
    "Write a short poem about the morning.",
    "How does a bicycle stay upright?",
    "Can you suggest a name for a small bakery?",
    "What is a good way to start learning to cook?",
    "Describe a quiet afternoon at the park.",
    "Why is the sky blue?",
    "How can I sleep better?",
    "Summarise what a library does.",
    "What are some fun things to do on a rainy day?",
    "Explain what a computer's memory is for.",
    "Write two sentences about the ocean.",
    "How do plants grow from seeds?",
    "What makes a good friend?",
    "Give me a simple plan for a birthday party.",
    "How do I care for a houseplant?",
    "Tell me a short story about a lost key.",
    "What is the difference between weather and climate?",
    "Suggest a healthy breakfast.",
    "How do trains run on time?",
)

Generate = Callable[[Sequence[str], int], list[str]]
"""`generate(texts, seed)`: one sampled continuation per (rendered) text."""


class SampleConfig(BaseModel):
    """How the self-sampled corpus is drawn: documents, their length and the sampler's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_docs: int = Field(32, ge=2, description="documents, half openings and half chat requests")
    max_new_tokens: int = Field(40, ge=4, description="tokens sampled per document")
    temperature: float = Field(0.8, gt=0)
    batch_size: int = Field(16, ge=1)
    seed: int = 0


def parse_source(source: str) -> int | None:
    """The document count of a `sampled[:N]` source (None: the default), or a ValueError."""
    source = source.strip()
    if source == SAMPLED:
        return None
    count = source.removeprefix(SAMPLED + ":")
    if not count.isdigit() or int(count) < 2:
        raise ValueError(
            f"bad corpus spec {source!r}: use 'sampled' or 'sampled:N' with N >= 2 documents"
        )
    return int(count)


def is_sampled(source: str) -> bool:
    """Whether a corpus source names the self-sampled corpus."""
    source = source.strip()
    return source == SAMPLED or source.startswith(SAMPLED + ":")


def prompts(config: SampleConfig) -> list[tuple[str, bool]]:
    """The (prompt, is_chat) of each document: openings and requests alternate, in a seeded order."""
    rng = random.Random(config.seed)
    openings, requests = list(OPENINGS), list(REQUESTS)
    rng.shuffle(openings)
    rng.shuffle(requests)
    out = []
    for i in range(config.n_docs):
        pool, chat = (openings, False) if i % 2 == 0 else (requests, True)
        out.append((pool[(i // 2) % len(pool)], chat))
    return out


def cache_path(fingerprint: str, config: SampleConfig) -> Path:
    """Where the corpus of base weights `fingerprint` under `config` is cached."""
    blob = json.dumps({"base": fingerprint, "config": config.model_dump(), "format": FORMAT})
    key = hashlib.blake2b(blob.encode(), digest_size=10).hexdigest()
    return paths.home() / "corpus" / f"sampled-{key}.json"


def sample_corpus(
    generate: Generate,
    fingerprint: str,
    config: SampleConfig | None = None,
    *,
    render: Callable[[str, bool], str] | None = None,
    progress: pg.Show = True,
) -> list[str]:
    """The self-sampled corpus of the base model with weights `fingerprint` (cached).

    `render(prompt, chat)` is the text a document starts with and the model continues (default:
    the prompt itself; the diffing layer passes the chat template for chat requests), so each
    document reads as the model saw it; `generate` samples the continuations of one batch of
    rendered texts (openings and requests together) from the base model.
    """
    config = config or SampleConfig()
    path = cache_path(fingerprint, config)
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(cached, dict) and isinstance(cached.get("texts"), list):
            return [str(t) for t in cached["texts"]]
    except (OSError, ValueError):
        pass
    items = prompts(config)
    head = render or (lambda p, _c: p)
    texts: list[str] = []
    bar: pg.Progress[None]
    with pg.progress(len(items), "sampling the probe corpus", show=progress) as bar:
        for start in range(0, len(items), config.batch_size):
            rendered = [head(p, chat) for p, chat in items[start : start + config.batch_size]]
            replies = generate(rendered, config.seed * 100_003 + start)
            texts.extend(h + r for h, r in zip(rendered, replies, strict=True))
            bar.advance(len(rendered), message=f"{len(texts)}/{len(items)} documents")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError("the base model sampled only empty documents; give a --corpus instead")
    paths.write_json(path, {"base": fingerprint, "config": config.model_dump(), "texts": texts})
    return texts
