"""Logit diff mining: ft_logits - base_logits at every position of a corpus, tokens ranked by how
often they are among the top-K positive (or negative) differences, the fraction of positions where
their difference is positive and their mean difference, and NMF topics over positions x tokens.

Also the predicted-mass shift: log((P_ft(t) + eps) / (P_base(t) + eps)) where P(t) is a model's
next-token probability of t averaged over all mined positions. Top-K occurrence favours tokens whose
logit moved at many positions (often template words and word pieces); the mass shift favours the
tokens the fine-tune actually predicts more often overall, e.g. a topic's words, which rise
strongly at the few positions where the topic fits."""

from __future__ import annotations

import random
import warnings
from collections.abc import Sized
from typing import Literal, cast

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from diffscope import progress as pg
from diffscope.models.batching import Inputs, batches, token_rows
from diffscope.models.pair import ModelPair, Which


class TokenStat(BaseModel):
    """How one token's logit moved over the mined positions."""

    token_id: int
    token: str
    occurrence: float = Field(description="share of positions where it is in the top-K diffs")
    frac_positive: float = Field(description="share of positions where ft_logit > base_logit")
    mean_diff: float = Field(description="mean of ft_logit - base_logit")
    mass_shift: float = Field(
        0.0,
        description="log((P_ft + eps) / (P_base + eps)) of the mean predicted probability",
    )


class TopicToken(BaseModel):
    """One token of an NMF topic."""

    token_id: int
    token: str
    weight: float = Field(description="the token's share of the topic")


class Topic(BaseModel):
    """One NMF component over positions x promoted tokens."""

    index: int
    weight: float = Field(description="the topic's share of the total activation over positions")
    tokens: list[TopicToken]


OrderBy = Literal["occurrence", "mass_shift", "frac_positive", "mean_diff"]
PER_TOKEN = ("occurrence", "neg_occurrence", "frac_positive", "mean_diff", "mass_shift")


class DiffMining(BaseModel):
    """Tokens whose logits the fine-tune raised or lowered, and the topics they form.

    The per-token tensors (`occurrence`, `neg_occurrence`, `frac_positive`, `mean_diff`,
    `mass_shift`, each [vocab]) stay out of JSON dumps.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    n_windows: int
    n_positions: int
    top_k: int
    promoted: list[TokenStat] = Field(description="ranked by top-K occurrence, then mean diff")
    demoted: list[TokenStat] = Field(description="ranked by bottom-K occurrence, then -mean diff")
    topics: list[Topic]
    occurrence: torch.Tensor = Field(exclude=True, repr=False)
    neg_occurrence: torch.Tensor = Field(exclude=True, repr=False)
    frac_positive: torch.Tensor = Field(exclude=True, repr=False)
    mean_diff: torch.Tensor = Field(exclude=True, repr=False)
    mass_shift: torch.Tensor = Field(exclude=True, repr=False)

    def ranked(
        self, pair: ModelPair, order_by: OrderBy, k: int, promoted: bool = True
    ) -> list[TokenStat]:
        """The k tokens of the tokenizer ranked by `order_by`, highest first when promoted and
        lowest first when not (for `occurrence`, demoted tokens rank by bottom-K occurrence),
        ties broken by mean difference and then by token id."""
        if order_by not in PER_TOKEN:
            raise ValueError(f"order_by must be one of {', '.join(PER_TOKEN)}, not {order_by!r}")
        n = min(int(self.mean_diff.shape[0]), len(cast(Sized, pair.tokenizer)))
        tie = self.mean_diff[:n].double()
        if order_by == "occurrence" and not promoted:
            key, tie = self.neg_occurrence[:n].double(), -tie
        else:
            key = getattr(self, order_by)[:n].double()
            if not promoted:
                key, tie = -key, -tie
        order = torch.argsort(tie, descending=True, stable=True)
        order = order[torch.argsort(key[order], descending=True, stable=True)]
        special = pair.special_mask(n)
        order = order[~special[order]][:k]  # special tokens are no text: never ranked
        rates = self.occurrence if promoted else self.neg_occurrence
        return [self._stat(pair, int(t), rates) for t in order.tolist()]

    def _stat(self, pair: ModelPair, t: int, rates: torch.Tensor) -> TokenStat:
        return TokenStat(
            token_id=t,
            token=pair.token_str(t),
            occurrence=float(rates[t]),
            frac_positive=float(self.frac_positive[t]),
            mean_diff=float(self.mean_diff[t]),
            mass_shift=float(self.mass_shift[t]),
        )


class _Reservoir:
    """A uniform sample of at most `cap` positions (their top-K token ids and diffs), algorithm R."""

    def __init__(self, cap: int, seed: int) -> None:
        self.cap = cap
        self.rng = random.Random(seed)
        self.seen = 0
        self.ids: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def add(self, ids: torch.Tensor, values: torch.Tensor) -> None:
        for i in range(ids.shape[0]):
            if len(self.ids) < self.cap:
                self.ids.append(ids[i].clone())
                self.values.append(values[i].clone())
            else:
                j = self.rng.randint(0, self.seen)
                if j < self.cap:
                    self.ids[j] = ids[i].clone()
                    self.values[j] = values[i].clone()
            self.seen += 1


def _topics(
    pair: ModelPair,
    sample: _Reservoir,
    counts: torch.Tensor,
    n_topics: int,
    tokens_per_topic: int,
    max_topic_tokens: int,
    seed: int,
) -> list[Topic]:
    """NMF over sampled positions x the most frequent top-K tokens (clipped positive diffs)."""
    if n_topics == 0 or not sample.ids:
        return []
    ids = torch.stack(sample.ids)
    values = torch.stack(sample.values).clamp(min=0)
    present = torch.unique(ids[values > 0])
    present = present[~pair.special_mask(counts.shape[0])[present]]
    if present.numel() == 0:
        return []
    order = sorted(present.tolist(), key=lambda t: (-int(counts[t]), t))[:max_topic_tokens]
    column = torch.full((counts.shape[0],), -1, dtype=torch.long)
    column[torch.tensor(order)] = torch.arange(len(order))
    cols = column[ids]
    keep = (cols >= 0) & (values > 0)
    matrix = torch.zeros(ids.shape[0], len(order), dtype=torch.float64)
    rows = torch.arange(ids.shape[0])[:, None].expand_as(ids)
    matrix[rows[keep], cols[keep]] = values[keep].double()
    matrix = matrix[matrix.sum(1) > 0]
    n_comp = min(n_topics, matrix.shape[0], matrix.shape[1])
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    nmf = NMF(n_components=n_comp, init="nndsvda", random_state=seed, max_iter=400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        w = nmf.fit_transform(matrix.numpy())
    h = nmf.components_
    load = w.sum(0) * h.sum(1)
    total = float(load.sum()) or 1.0
    topics: list[Topic] = []
    for c in np.argsort(-load):
        row = h[c]
        norm = float(row.sum()) or 1.0
        top = [j for j in np.argsort(-row)[:tokens_per_topic] if row[j] > 0]
        topics.append(
            Topic(
                index=len(topics),
                weight=float(load[c]) / total,
                tokens=[
                    TopicToken(
                        token_id=order[j],
                        token=pair.token_str(order[j]),
                        weight=float(row[j]) / norm,
                    )
                    for j in top
                ],
            )
        )
    return topics


@torch.no_grad()
def mine_logit_diffs(
    pair: ModelPair,
    windows: Inputs,
    *,
    positions: int = 64,
    top_k: int = 100,
    batch_size: int = 8,
    n_topics: int = 3,
    seed: int = 0,
    n_report: int = 50,
    tokens_per_topic: int = 15,
    topic_sample: int = 4096,
    max_topic_tokens: int = 2000,
    mass_smoothing: float | None = None,
    progress: pg.Show = None,
) -> DiffMining:
    """Mine ft_logits - base_logits over the first `positions` tokens of each window (or text).

    Per token: how often it is among the `top_k` largest positive differences at a position
    (occurrence; only strictly positive differences count), the fraction of positions where its
    difference is positive, and its mean difference. `promoted`/`demoted` hold the `n_report` best
    tokens by top-K / bottom-K occurrence. Topics: NMF with `n_topics` components (seeded) over
    up to `topic_sample` reservoir-sampled positions x the `max_topic_tokens` most frequent top-K
    tokens, valued by the clipped positive differences of each position's top-K. Memory is bounded
    by batch x positions x vocab plus topic_sample x top_k, independent of corpus length.
    `mass_smoothing` is the eps of the mass shift (default 2 / vocab, twice the uniform
    probability, so tokens that neither model predicts cannot top the list on a ratio of tiny
    numbers).
    """
    vocab = pair.vocab_size
    if not 1 <= top_k <= vocab:
        raise ValueError(f"top_k must be between 1 and the vocabulary size {vocab}, got {top_k}")
    if n_topics < 0:
        raise ValueError(f"n_topics must be >= 0, got {n_topics}")
    if n_report < 1 or tokens_per_topic < 1 or topic_sample < 1 or max_topic_tokens < 1:
        raise ValueError(
            "n_report, tokens_per_topic, topic_sample and max_topic_tokens must be >= 1"
        )
    if mass_smoothing is not None and not mass_smoothing > 0:
        raise ValueError(f"mass_smoothing must be > 0, got {mass_smoothing}")
    rows = token_rows(pair, windows, max_tokens=positions)
    occurrence = torch.zeros(vocab, dtype=torch.long)
    neg_occurrence = torch.zeros(vocab, dtype=torch.long)
    positive = torch.zeros(vocab, dtype=torch.long)
    total = torch.zeros(vocab, dtype=torch.float64)
    sides: tuple[Which, ...] = ("base", "finetuned")
    mass = {which: torch.zeros(vocab, dtype=torch.float64) for which in sides}
    n_positions = 0
    sample = _Reservoir(topic_sample, seed)
    bar: pg.Progress[None] = pg.progress(len(rows), "diff mining", show=progress)
    for start, batch in batches(pair, rows, batch_size):
        real = batch.attention_mask.bool()
        logits = {w: pair.logits(w, batch).float()[..., :vocab][real].cpu() for w in mass}
        for which, value in logits.items():
            mass[which] += value.softmax(-1).sum(0).double()
        diff = logits["finetuned"] - logits["base"]  # [N, vocab], real tokens only
        del logits
        n_positions += diff.shape[0]
        positive += (diff > 0).sum(0)
        total += diff.double().sum(0)
        up_vals, up_ids = torch.topk(diff, top_k, dim=-1)
        occurrence += torch.bincount(up_ids[up_vals > 0], minlength=vocab)
        down_vals, down_ids = torch.topk(-diff, top_k, dim=-1)
        neg_occurrence += torch.bincount(down_ids[down_vals > 0], minlength=vocab)
        if n_topics:
            sample.add(up_ids, up_vals)
        done = min(start + batch_size, len(rows))
        bar.advance(done - bar.done, message=f"mined {done}/{len(rows)} windows")
    bar.close()
    rate = occurrence.double() / n_positions
    neg_rate = neg_occurrence.double() / n_positions
    frac = positive.double() / n_positions
    mean = total / n_positions
    eps = 2.0 / vocab if mass_smoothing is None else mass_smoothing
    shift = ((mass["finetuned"] / n_positions + eps) / (mass["base"] / n_positions + eps)).log()
    topics = _topics(pair, sample, occurrence, n_topics, tokens_per_topic, max_topic_tokens, seed)
    result = DiffMining(
        n_windows=len(rows),
        n_positions=n_positions,
        top_k=top_k,
        promoted=[],
        demoted=[],
        topics=topics,
        occurrence=rate.float(),
        neg_occurrence=neg_rate.float(),
        frac_positive=frac.float(),
        mean_diff=mean.float(),
        mass_shift=shift.float(),
    )

    def in_top_k(promoted: bool) -> list[TokenStat]:  # tokens in some position's top-K at all
        ranked = result.ranked(pair, "occurrence", n_report, promoted=promoted)
        return [stat for stat in ranked if stat.occurrence > 0]

    result.promoted, result.demoted = in_top_k(True), in_top_k(False)
    return result
