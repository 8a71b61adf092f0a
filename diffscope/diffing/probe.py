"""The probe corpus of a pair's artifacts: which text (`CorpusSpec`), cut into token windows
deterministically, and a content hash of file corpora (part of the cache keys that depend on it)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from diffscope.models.pair import ModelPair


class CorpusSpec(BaseModel):
    """Which text the artifacts are computed on, and how it is cut into windows."""

    model_config = ConfigDict(extra="forbid")

    source: str = "world"
    n_docs: int = Field(1200, ge=1)
    seed: int = 7
    window: int = Field(64, ge=4)
    max_windows: int = Field(384, ge=1)


def probe_windows(pair: ModelPair, spec: CorpusSpec) -> torch.Tensor:
    """The probe corpus as token windows [N, window] (deterministic from the spec)."""
    from diffscope.corpus import resolve_corpus, token_windows

    window = min(spec.window, pair.context_length)
    texts = resolve_corpus(spec.source, n_docs=spec.n_docs, seed=spec.seed)
    return token_windows(pair.tokenizer, texts, window, max_windows=spec.max_windows)


def corpus_fingerprint(corpus: CorpusSpec) -> str:
    """A hash of a file or folder corpus's contents ('' for the world corpus)."""
    source = corpus.source.strip()
    if source == "world" or source.startswith("world:"):
        return ""
    path = Path(source).expanduser()
    digest = hashlib.blake2b(digest_size=12)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        digest.update(str(f.relative_to(path) if f != path else f.name).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()
