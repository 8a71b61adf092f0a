"""Batching for a model pair, the one batcher every primitive uses: texts or token windows to token
rows (checked against the context and the vocabulary), rows to left-padded batches whose position
ids count real tokens only, and consecutive batches over a list of rows."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffscope.models.pair import ModelPair

Inputs = Sequence[str] | torch.Tensor
"""What the diffing primitives take: a list of texts or a [N, T] tensor of token windows."""


@dataclass
class Batch:
    """Token ids with left padding; position ids count real tokens only."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "position_ids": self.position_ids,
        }


def positions_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on the first real token of each left-padded row."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: str | torch.device) -> Batch:
    """One left-padded batch of (non-empty) token rows on `device`."""
    if not rows:
        raise ValueError("no texts given")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return Batch(ids.to(device), mask.to(device), positions_from_mask(mask).to(device))


def unpadded(input_ids: torch.Tensor, device: str | torch.device) -> Batch:
    """Equal-length token windows [B, T] (no padding) as a Batch on `device`."""
    mask = torch.ones_like(input_ids)
    return Batch(input_ids.to(device), mask.to(device), positions_from_mask(mask).to(device))


class ChatText(str):
    """A prompt already rendered through the tokenizer's chat template (`ModelPair.format_prompt`).

    The template writes its own special tokens (a BOS among them where the model uses one), so such
    text is tokenized without adding more, exactly as `apply_chat_template(tokenize=True)` does."""

    __slots__ = ()


def _special_prefix(tokenizer) -> str | None:
    bos = getattr(tokenizer, "bos_token", None)
    return bos if isinstance(bos, str) and bos else None


def tokenize(tokenizer, texts: Sequence[str], *, add_bos: bool = False) -> list[list[int]]:
    """Token ids of each text as the model's own tokenizer makes them by default: plain text gets
    the special tokens the tokenizer adds (a BOS where it adds one), chat-templated text
    (`ChatText`, or text that already opens with the BOS string) gets none added. `add_bos` puts a
    BOS first where the tokenizer has one and did not add it. A ValueError for a text that is empty
    after tokenization."""
    bos_text = _special_prefix(tokenizer)
    rows = []
    for text in texts:
        templated = isinstance(text, ChatText) or bool(bos_text and text.startswith(bos_text))
        rows.append(list(tokenizer(text, add_special_tokens=not templated)["input_ids"]))
    bos = getattr(tokenizer, "bos_token_id", None)
    if add_bos and bos is not None:
        rows = [r if r[:1] == [bos] else [bos, *r] for r in rows]
    for i, row in enumerate(rows):
        if not row or not texts[i]:
            raise ValueError(f"text {i} is empty after tokenization")
    return rows


def added_bos(tokenizer) -> int | None:
    """The BOS id the tokenizer puts before plain text by default, or None when it adds none."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return None
    probe = "a"
    plain = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    default = list(tokenizer(probe)["input_ids"])
    return int(bos) if default[:1] == [bos] and plain[:1] != [bos] else None


def check_length(rows: Sequence[Sequence[int]], limit: int, what: str) -> None:
    """A ValueError for the first row longer than `limit` tokens (`what` names the limit)."""
    for i, row in enumerate(rows):
        if len(row) > limit:
            raise ValueError(
                f"text {i} is {len(row)} tokens long, over the {what} of {limit}; shorten it"
            )


def token_rows(
    pair: ModelPair, inputs: Inputs, *, max_tokens: int | None = None, chat: bool = False
) -> list[list[int]]:
    """Token ids of each text (tokenized as the model's tokenizer does, `tokenize`) or each row of
    a [N, T] window tensor.

    With `max_tokens`, rows are cut to their first `max_tokens` tokens; without it, a row longer
    than the context raises a ValueError. `chat` wraps texts in the pair's chat template.
    """
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() != 2 or inputs.shape[0] == 0 or inputs.shape[1] == 0:
            raise ValueError(
                f"token windows must be a non-empty [N, T] tensor, got shape {tuple(inputs.shape)}"
            )
        if inputs.dtype.is_floating_point or inputs.dtype == torch.bool:
            raise ValueError(f"token windows must hold integer ids, got {inputs.dtype}")
        vocab = pair.vocab_size
        if int(inputs.min()) < 0 or int(inputs.max()) >= vocab:
            raise ValueError(f"token windows hold ids outside the vocabulary 0..{vocab - 1}")
        rows = inputs.cpu().tolist()
    else:
        if isinstance(inputs, str):
            raise ValueError("give a list of texts, not a single string")
        texts = list(inputs)
        if not texts:
            raise ValueError("the corpus is empty: give at least one text")
        if chat:
            texts = [pair.format_prompt(t, chat=True) for t in texts]
        rows = tokenize(pair.tokenizer, texts)
    if max_tokens is not None:
        if max_tokens < 1:
            raise ValueError(f"the number of positions must be >= 1, got {max_tokens}")
        rows = [row[:max_tokens] for row in rows]
    check_length(rows, pair.context_length, "context")
    return rows


def batches(
    pair: ModelPair, rows: Sequence[Sequence[int]], batch_size: int
) -> Iterator[tuple[int, Batch]]:
    """(index of the first row, batch) over consecutive groups of `batch_size` rows."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(rows), batch_size):
        yield start, left_pad(rows[start : start + batch_size], pair.pad_id, pair.device)
