"""KL probe: per-token KL(ft || base) of the next-token distributions at temperature 1, summary
statistics over prompts or a corpus, and the highest-KL positions with their context and the
tokens whose probability moved most."""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Sequence

import torch
from pydantic import BaseModel, Field

from diffscope import progress as pg
from diffscope.models.batching import Batch, Inputs, batches, token_rows
from diffscope.models.pair import ModelPair

CONTEXT_TOKENS = 20


# -- KL ----------------------------------------------------------------------------------------
def kl_from_logits(ft_logits: torch.Tensor, base_logits: torch.Tensor) -> torch.Tensor:
    """KL(ft || base) over the last (vocabulary) dimension, in float32."""
    log_ft = torch.log_softmax(ft_logits.float(), dim=-1)
    log_base = torch.log_softmax(base_logits.float(), dim=-1)
    return (log_ft.exp() * (log_ft - log_base)).sum(-1).clamp(min=0.0)


@torch.no_grad()
def kl_per_token(pair: ModelPair, batch: Batch) -> torch.Tensor:
    """KL(ft || base) of the next-token distribution at every position, [B, T], in nats.

    Position t compares the two models' predictions of token t + 1. Padding positions
    (`batch.attention_mask == 0`) are 0.
    """
    kl = kl_from_logits(pair.logits("finetuned", batch), pair.logits("base", batch))
    return kl * batch.attention_mask.to(kl.dtype)


class TokenShift(BaseModel):
    """One token's next-token probability under both models."""

    token_id: int
    token: str
    p_base: float
    p_ft: float
    delta: float = Field(description="p_ft - p_base")


class KLPosition(BaseModel):
    """One high-KL position: what came before, what came next, and which tokens moved."""

    sample: int = Field(description="index of the prompt or window")
    position: int = Field(description="index of the token among the sample's real tokens")
    kl: float
    context: str = Field(description=f"up to {CONTEXT_TOKENS} tokens ending at this position")
    token: str = Field(description="the token at this position")
    next_token: str | None = Field(description="the token that actually follows, if any")
    top_base: str = Field(description="the base model's most likely next token")
    top_ft: str = Field(description="the fine-tune's most likely next token")
    up: list[TokenShift] = Field(description="tokens the fine-tune made more likely")
    down: list[TokenShift] = Field(description="tokens the fine-tune made less likely")


class KLProbe(BaseModel):
    """KL(ft || base) per token over a set of prompts or windows."""

    n_samples: int
    n_tokens: int
    mean: float
    median: float
    max: float
    per_sample_mean: list[float]
    top: list[KLPosition] = Field(description="the highest-KL positions, highest first")


def _shifts(pair: ModelPair, p_ft: torch.Tensor, p_base: torch.Tensor, n: int, up: bool):
    delta = p_ft - p_base
    shift = (delta if up else -delta).masked_fill(pair.special_mask(delta.shape[-1]), -1.0)
    values, ids = torch.topk(shift, n)  # special tokens (masked to -1) never pass `v > 0`
    return [
        TokenShift(
            token_id=int(i),
            token=pair.token_str(int(i)),
            p_base=float(p_base[i]),
            p_ft=float(p_ft[i]),
            delta=float(delta[i]),
        )
        for v, i in zip(values.tolist(), ids.tolist(), strict=True)
        if v > 0
    ]


def _describe(
    pair: ModelPair,
    row: Sequence[int],
    sample: int,
    position: int,
    kl: float,
    ft_logits: torch.Tensor,
    base_logits: torch.Tensor,
    top_tokens: int,
) -> KLPosition:
    p_ft = torch.softmax(ft_logits.float(), -1)
    p_base = torch.softmax(base_logits.float(), -1)
    n = min(top_tokens, p_ft.shape[-1])
    start = max(0, position + 1 - CONTEXT_TOKENS)
    nxt = row[position + 1] if position + 1 < len(row) else None
    return KLPosition(
        sample=sample,
        position=position,
        kl=kl,
        context=pair.decode(list(row[start : position + 1])),
        token=pair.token_str(row[position]),
        next_token=None if nxt is None else pair.token_str(nxt),
        top_base=pair.token_str(int(p_base.argmax())),
        top_ft=pair.token_str(int(p_ft.argmax())),
        up=_shifts(pair, p_ft, p_base, n, up=True),
        down=_shifts(pair, p_ft, p_base, n, up=False),
    )


@torch.no_grad()
def kl_probe(
    pair: ModelPair,
    prompts_or_windows: Inputs,
    *,
    k: int = 10,
    top_tokens: int = 5,
    batch_size: int = 8,
    chat: bool = False,
    progress: pg.Show = None,
) -> KLProbe:
    """Per-token KL(ft || base) over texts (or [N, T] token windows): mean, median, max, the mean
    of each sample, and the `k` highest-KL positions with context and the `top_tokens` tokens
    whose probability rose and fell most. Streams over batches; one forward of each model each.
    `progress`: where progress goes (`diffscope.progress.Show`)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if top_tokens < 1:
        raise ValueError(f"top_tokens must be >= 1, got {top_tokens}")
    rows = token_rows(pair, prompts_or_windows, chat=chat)
    values: list[float] = []
    per_sample: list[float] = []
    best: list[tuple[float, int, int, KLPosition]] = []  # min-heap of (kl, -sample, -pos, entry)
    bar: pg.Progress[None] = pg.progress(len(rows), "KL probe", show=progress)
    for start, batch in batches(pair, rows, batch_size):
        ft_logits = pair.logits("finetuned", batch)
        base_logits = pair.logits("base", batch)
        kl = kl_from_logits(ft_logits, base_logits)
        width = kl.shape[1]
        for b in range(kl.shape[0]):
            n_real = len(rows[start + b])
            real = kl[b, width - n_real :]
            values.extend(real.tolist())
            per_sample.append(float(real.mean()))
            if k == 0:
                continue
            count = min(k, n_real)
            top_vals, top_pos = torch.topk(real, count)
            for value, pos in zip(top_vals.tolist(), top_pos.tolist(), strict=True):
                key = (value, -(start + b), -pos)
                if len(best) == k and key <= best[0][:3]:
                    continue
                col = width - n_real + pos
                entry = _describe(
                    pair,
                    rows[start + b],
                    start + b,
                    pos,
                    value,
                    ft_logits[b, col],
                    base_logits[b, col],
                    top_tokens,
                )
                if len(best) == k:
                    heapq.heapreplace(best, (*key, entry))
                else:
                    heapq.heappush(best, (*key, entry))
        done = min(start + batch_size, len(rows))
        bar.advance(done - bar.done, message=f"KL over {done}/{len(rows)} samples")
    bar.close()
    top = [item[3] for item in sorted(best, key=lambda item: item[:3], reverse=True)]
    return KLProbe(
        n_samples=len(rows),
        n_tokens=len(values),
        mean=float(statistics.fmean(values)),
        median=float(statistics.median(values)),
        max=float(max(values)),
        per_sample_mean=per_sample,
        top=top,
    )
