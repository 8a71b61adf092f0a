"""The probe corpus of a pair's artifacts: which text (`CorpusSpec`: the world corpus, a file, or
the base model's own samples), cut into token windows deterministically, and a content hash of
file corpora (part of the cache keys that depend on it)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from diffscope import progress as pg
from diffscope.models.pair import ModelPair


class CorpusSpec(BaseModel):
    """Which text the artifacts are computed on, and how it is cut into windows."""

    model_config = ConfigDict(extra="forbid")

    source: str = "world"
    n_docs: int = Field(1200, ge=1)
    seed: int = 7
    window: int = Field(64, ge=4)
    max_windows: int = Field(384, ge=1)


def probe_windows(pair: ModelPair, spec: CorpusSpec, progress: pg.Show = True) -> torch.Tensor:
    """The probe corpus as token windows [N, window] (deterministic from the spec). Each window
    opens with the BOS token where the pair's tokenizer adds one to plain text."""
    from diffscope.corpus import resolve_corpus, token_windows
    from diffscope.corpus.sampled import is_sampled

    window = min(spec.window, pair.context_length)
    if is_sampled(spec.source):
        texts = sampled_texts(pair, spec, progress)
    else:
        texts = resolve_corpus(spec.source, n_docs=spec.n_docs, seed=spec.seed)
    return token_windows(
        pair.tokenizer, texts, window, max_windows=spec.max_windows, bos_id=pair.bos_id
    )


def sampled_texts(pair: ModelPair, spec: CorpusSpec, progress: pg.Show = True) -> list[str]:
    """The base model's own samples for a `sampled[:N]` corpus (cached; see `corpus.sampled`)."""
    from diffscope.corpus.sampled import SampleConfig, parse_source, sample_corpus

    n_docs = parse_source(spec.source)
    config = SampleConfig(seed=spec.seed, **({} if n_docs is None else {"n_docs": n_docs}))

    def render(prompt: str, chat: bool) -> str:
        if not chat:
            return prompt
        if pair.has_chat_template:
            return pair.format_prompt(prompt, chat=True)
        return f"User: {prompt}\nAssistant:"

    def generate(texts: Sequence[str], seed: int) -> list[str]:
        return pair.generate(
            "base",
            list(texts),  # rendered already: chat requests are ChatText
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            seed=seed,
            chat=False,
        )

    return sample_corpus(
        generate, pair.base_fingerprint(), config, render=render, progress=progress
    )


def corpus_fingerprint(corpus: CorpusSpec) -> str:
    """A hash of a file or folder corpus's contents ('' for the world corpus)."""
    source = corpus.source.strip()
    if source == "world" or source.startswith("world:") or source.split(":")[0] == "sampled":
        return ""  # generated: the world from code, a sampled corpus from the base weights
    path = Path(source).expanduser()
    digest = hashlib.blake2b(digest_size=12)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        digest.update(str(f.relative_to(path) if f != path else f.name).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()
