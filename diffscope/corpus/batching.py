"""Deterministic batching: texts to fixed-length token windows, windows to batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

_SEPARATORS = ("<|endoftext|>", "</s>", "<eos>", "[EOS]", "<|eos|>", "[SEP]", "<sep>")
_CHUNK = 256


def _is_raw_tokenizer(tokenizer: Any) -> bool:
    try:
        from tokenizers import Tokenizer
    except ImportError:  # pragma: no cover - tokenizers is a dependency
        return False
    return isinstance(tokenizer, Tokenizer)


def separator_id(tokenizer: Any) -> int | None:
    """The id that separates documents: the tokenizer's EOS (or SEP) token, if it has one."""
    if _is_raw_tokenizer(tokenizer):
        for token in _SEPARATORS:
            found = tokenizer.token_to_id(token)
            if found is not None:
                return int(found)
        return None
    for attribute in ("eos_token_id", "sep_token_id"):
        found = getattr(tokenizer, attribute, None)
        if isinstance(found, int):
            return found
    return None


def encode_texts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens (HF tokenizer or `tokenizers.Tokenizer`)."""
    if not texts:
        return []
    if _is_raw_tokenizer(tokenizer):
        return [
            list(enc.ids) for enc in tokenizer.encode_batch(list(texts), add_special_tokens=False)
        ]
    encoded = tokenizer(list(texts), add_special_tokens=False)
    return [list(ids) for ids in encoded["input_ids"]]


def token_windows(
    tokenizer: Any,
    texts: Sequence[str],
    window: int,
    *,
    max_windows: int | None = None,
    bos_id: int | None = None,
    stride: int | None = None,
    sep_id: int | None = None,
) -> torch.Tensor:
    """Fixed-length token windows [N, window] (int64) cut from the concatenated texts.

    Texts are tokenized without special tokens and joined with a separator id between documents
    (`sep_id`, else the tokenizer's EOS/SEP token, else `bos_id`). With `bos_id`, every window
    starts with it and holds `window - 1` corpus tokens. Windows start every `stride` corpus
    tokens (default: no overlap). Only as many texts are tokenized as `max_windows` needs.
    """
    if window < 2:
        raise ValueError(f"window must be at least 2 tokens, got {window}")
    if max_windows is not None and max_windows < 1:
        raise ValueError(f"max_windows must be >= 1, got {max_windows}")
    if not texts or not any(text.strip() for text in texts):
        raise ValueError("the corpus is empty: give at least one non-empty text")
    body = window - 1 if bos_id is not None else window
    step = stride if stride is not None else body
    if step < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    sep = sep_id if sep_id is not None else separator_id(tokenizer)
    if sep is None:
        sep = bos_id
    if sep is None:
        raise ValueError(
            "the tokenizer has no EOS/SEP token to separate documents; pass sep_id= (or bos_id=)"
        )
    needed = None if max_windows is None else body + step * (max_windows - 1)
    stream: list[int] = []
    for start in range(0, len(texts), _CHUNK):
        for ids in encode_texts(tokenizer, texts[start : start + _CHUNK]):
            if not ids:
                continue
            if stream:
                stream.append(sep)
            stream.extend(ids)
        if needed is not None and len(stream) >= needed:
            break
    if len(stream) < body:
        raise ValueError(
            f"the corpus is too short: {len(stream)} tokens, fewer than one window of {body} "
            f"corpus tokens; give more text or a smaller window"
        )
    count = 1 + (len(stream) - body) // step
    if max_windows is not None:
        count = min(count, max_windows)
    tokens = torch.tensor(stream, dtype=torch.long)
    starts = torch.arange(count, dtype=torch.long) * step
    windows = tokens[starts[:, None] + torch.arange(body, dtype=torch.long)[None, :]]
    if bos_id is not None:
        windows = torch.cat([torch.full((count, 1), bos_id, dtype=torch.long), windows], dim=1)
    return windows


def iter_batches(windows: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Consecutive batches of `batch_size` windows, in order; the last one may be smaller."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, windows.shape[0], batch_size):
        yield windows[start : start + batch_size]
