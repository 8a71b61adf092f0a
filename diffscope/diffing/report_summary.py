"""The difference report's summary: a plain-language account of the strongest evidence, computed
from the report's own measurements of one pair (nothing here knows a corpus or an organism).

It says first whether anything changed at all, decided from measured quantities: the largest
per-token KL(ft || base) on the probe windows and the largest mean logit difference of any token,
against noise floors in `ReportConfig`. When something changed it lists the words the fine-tune
predicts more often (ranked by mass shift, made readable by `report_words`), the contexts where
the two models disagree most (KL), the words the neuron clusters share, and a few seeded samples
of the amplified fine-tune (logits_ft + alpha (logits_ft - logits_base)).
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, Field

from diffscope.diffing.kl import CONTEXT_TOKENS, KLPosition, KLProbe
from diffscope.diffing.mining import DiffMining
from diffscope.diffing.report_words import (
    WordIndex,
    piece_text,
    readable_labels,
    readable_words,
    special_ids,
    word_index,
)
from diffscope.models.batching import tokenize
from diffscope.models.pair import ModelPair

if TYPE_CHECKING:
    from diffscope.diffing.report import ReportConfig

SNIPPET_CHARS = 70
SENTENCE_END = (".", "!", "?")
STRONG_RATIO = 2.0
"""A word predicted at least this many times as often as by the base model is a strong shift."""


class SummaryWord(BaseModel):
    """A whole word the fine-tune predicts more often than the base model."""

    word: str
    mass_shift: float = Field(description="log ratio of the mean predicted probability, ft / base")
    ratio: float = Field(description="exp(mass_shift): how many times as often it is predicted")
    tokens: list[str] = Field(description="the ranked tokens merged into this word")


class SummaryContext(BaseModel):
    """One of the places where the models' next-token predictions differ most."""

    snippet: str = Field(description="the end of the context before the position")
    finetuned: str = Field(description="the fine-tune's greedy continuation of the context")
    base: str = Field(description="the base model's greedy continuation of the context")
    raised: list[str] = Field(description="the tokens whose probability the fine-tune raised most")
    kl: float


class SummaryCluster(BaseModel):
    """A neuron cluster, named by the whole words its members' gaps peak on."""

    words: list[str]
    neurons: int


class SummarySample(BaseModel):
    """A seeded sample of the amplified fine-tune."""

    prompt: str
    continuation: str


class Summary(BaseModel):
    """What the report found, strongest evidence first; `lines` is the text the HTML leads with."""

    changed: bool = Field(description="whether any measured difference is above the noise floor")
    verdict: str
    measures: dict[str, float]
    words: list[SummaryWord]
    contexts: list[SummaryContext]
    clusters: list[SummaryCluster]
    samples: list[SummarySample]
    alpha: float
    lines: list[str]


def _snippet(text: str, cut: bool, chars: int = SNIPPET_CHARS) -> str:
    """The end of a context of at most about `chars` characters; when it was `cut` from the
    middle of a text (or made shorter here) its first, likely partial, word goes and an ellipsis
    stands in front."""
    words = " ".join(text.split()).split(" ")
    if cut and len(words) > 3:
        words = words[1:]
    while len(words) > 3 and len(" ".join(words)) > chars:
        words, cut = words[1:], True
    return ("…" if cut else "") + " ".join(words)


def doc_start_prompts(pair: ModelPair, windows: torch.Tensor, n: int, tokens: int) -> list[str]:
    """Up to `n` prompts from the probe windows: the first `tokens` tokens (ended at a word
    boundary) after a document separator (else after a sentence end), from windows spread over
    the probe."""
    if n <= 0 or windows.shape[0] == 0:
        return []
    special = special_ids(pair.tokenizer)
    picks = torch.linspace(0, windows.shape[0] - 1, steps=min(n * 4, windows.shape[0])).long()
    prompts: list[str] = []
    for w in dict.fromkeys(picks.tolist()):
        row = windows[w].tolist()
        pieces = [piece_text(pair.tokenizer, t) for t in row]
        starts = [i + 1 for i, t in enumerate(row) if t in special] or [
            i + 1
            for i, p in enumerate(pieces[:-1])
            if p.endswith("\n") or (p.rstrip()[-1:] in SENTENCE_END and pieces[i + 1][:1].isspace())
        ]
        start = next((s for s in starts if len(row) - s > tokens + 4), None)
        if start is None:
            continue
        end = start + tokens
        while end < min(len(row), start + tokens + 6) and not pieces[end][:1].isspace():
            end += 1
        text = pair.decode(row[start:end]).strip()
        if text and text not in prompts:
            prompts.append(text)
        if len(prompts) == n:
            break
    return prompts


def _contexts(
    pair: ModelPair, windows: torch.Tensor, kl: KLProbe, k: int, tokens: int
) -> list[SummaryContext]:
    """Up to `k` of the highest-KL positions (one per window), each from its document's start (at
    most `CONTEXT_TOKENS` tokens back), with both models' greedy continuations of `tokens` tokens;
    a position where both continuations agree, or whose fine-tune continuation repeats an earlier
    one's, is left out."""
    special = special_ids(pair.tokenizer)
    chosen: list[tuple[KLPosition, list[int], bool]] = []
    for p in kl.top:
        if len(chosen) == 2 * k:
            break
        if p.kl <= 0 or any(p.sample == q.sample for q, _, _ in chosen):
            continue
        row = windows[p.sample].tolist()
        ids = row[max(0, p.position + 1 - CONTEXT_TOKENS) : p.position + 1]
        after = max((i + 1 for i, t in enumerate(ids) if t in special), default=0)
        if len(ids) - after >= 2:
            chosen.append((p, ids[after:], after == 0))
    if not chosen or k == 0:
        return []
    texts = [pair.decode(ids) for _, ids, _ in chosen]
    said = {
        which: pair.generate(which, texts, max_new_tokens=tokens, temperature=0.0, chat=False)
        for which in ("finetuned", "base")
    }
    out: list[SummaryContext] = []
    for (p, _, cut), text, ft, base in zip(
        chosen, texts, said["finetuned"], said["base"], strict=True
    ):
        ft, base = " ".join(ft.split()), " ".join(base.split())
        if len(out) < k and ft != base and all(c.finetuned != ft for c in out):
            out.append(
                SummaryContext(
                    snippet=_snippet(text, cut),
                    finetuned=ft,
                    base=base,
                    raised=[t.token for t in p.up[:3]],
                    kl=p.kl,
                )
            )
    return out


def _clusters(clusters: list[dict[str, Any]], index: WordIndex, k: int) -> list[SummaryCluster]:
    out = []
    for c in clusters:
        words = readable_labels([t for t, _ in c["shared_tokens"]], index, 4)
        if words:
            out.append(SummaryCluster(words=words, neurons=len(c["neurons"])))
        if len(out) == k:
            break
    return out


def _lines(s: Summary) -> list[str]:
    lines = [s.verdict]
    if not s.changed:
        return lines
    if s.words:
        words = ", ".join(f"{w.word} (×{w.ratio:.1f})" for w in s.words)
        lines.append(
            "Words the fine-tune predicts more often than the base model (× how many times as "
            f"often, over the probe corpus): {words}."
        )
    else:
        lines.append("No whole word is predicted clearly more often by the fine-tune.")
    if s.contexts:
        end = "(ends the text)"
        parts = [
            f"“{c.snippet}” → fine-tune “{c.finetuned or end}”, base “{c.base or end}”"
            for c in s.contexts
        ]
        lines.append("Where the two models disagree most: " + "; ".join(parts) + ".")
    if s.clusters:
        parts = [f"{' / '.join(c.words)} ({c.neurons} neurons)" for c in s.clusters]
        lines.append("The most changed neurons group around: " + "; ".join(parts) + ".")
    for sample in s.samples:
        lines.append(
            f"Amplified fine-tune (α = {s.alpha:g}): “{sample.prompt} ⟨{sample.continuation}⟩”"
        )
    return lines


def build_summary(
    pair: ModelPair,
    windows: torch.Tensor,
    kl: KLProbe,
    mining: DiffMining,
    clusters: list[dict[str, Any]],
    max_gap: float,
    cfg: ReportConfig,
) -> Summary:
    """The summary of a report's evidence (see the module docstring). `windows` are the probe
    windows whose prefix the KL probe ran on. Only when something changed does it generate: the
    amplified samples (`cfg.amplify_prompts` x `cfg.amplify_tokens` steps of both models) and the
    continuations of the top KL contexts (`cfg.summary_contexts` x `cfg.context_tokens`)."""
    from diffscope.diffing.steering import amplify

    logit = float(mining.mean_diff.abs().max()) if mining.mean_diff.numel() else 0.0
    measures = {
        "kl_mean": kl.mean,
        "kl_max": kl.max,
        "max_mean_logit_diff": logit,
        "max_rms_gap": max_gap,
        "probe_tokens": float(kl.n_tokens),
    }
    changed = kl.max > cfg.noise_kl or logit > cfg.noise_logit
    samples: list[SummarySample] = []
    if changed and cfg.amplify_prompts > 0:
        prompts = doc_start_prompts(pair, windows, cfg.amplify_prompts, cfg.prompt_tokens)
        if prompts:
            got = amplify(
                pair,
                prompts,
                alpha=cfg.amplify_alpha,
                max_new_tokens=cfg.amplify_tokens,
                temperature=cfg.amplify_temperature,
                seed=cfg.seed,
                chat=False,
            )
            samples = [
                SummarySample(prompt=p, continuation=" ".join(s[0].split()))
                for p, s in zip(got.prompts, got.samples, strict=True)
            ]
    contexts = (
        _contexts(pair, windows, kl, cfg.summary_contexts, cfg.context_tokens) if changed else []
    )
    evidence = [row.tolist() for row in windows[: cfg.evidence_windows]]
    # generated text, its last word left out (cut off mid-word where the budget ran out)
    texts = [s.continuation for s in samples] + [c.finetuned for c in contexts]
    whole = [t.rsplit(" ", 1)[0] for t in texts if " " in t.strip()]
    evidence += tokenize(pair.tokenizer, whole)
    index = word_index(pair.tokenizer, evidence)
    ranked = mining.ranked(pair, "mass_shift", cfg.summary_candidates) if changed else []
    shift = mining.mass_shift
    words = [
        SummaryWord(word=w.word, mass_shift=w.score, ratio=math.exp(w.score), tokens=w.tokens)
        for w in readable_words(
            ((t.token_id, t.token, t.mass_shift) for t in ranked),
            index,
            cfg.summary_words,
            lambda t: float(shift[t]) if t < shift.shape[0] else 0.0,
            common_share=cfg.common_word_share,
            min_score=cfg.min_mass_shift,
        )
    ]
    if not changed:
        verdict = (
            f"No change found: over {kl.n_tokens} probe tokens the fine-tune's next-token "
            f"predictions match the base model's (largest per-token KL {kl.max:.2g} nats, largest "
            f"mean logit difference {logit:.2g}), at or below the noise floor (KL "
            f"{cfg.noise_kl:g}, logit {cfg.noise_logit:g}). The sections below show only noise."
        )
    else:
        strong = bool(words) and words[0].ratio >= STRONG_RATIO
        verdict = (
            f"The fine-tune changed its predictions: mean KL(ft || base) {kl.mean:.3f} nats per "
            f"token, up to {kl.max:.2f} nats at one position."
        )
        if words and strong:
            top = ", ".join(w.word for w in words[:5])
            verdict += f" The strongest evidence points to: {top}."
        else:
            verdict += (
                f" No single word stands out (none is predicted {STRONG_RATIO:g} times as often "
                "as by the base model): read the contexts and samples below for what changed."
            )
    summary = Summary(
        changed=changed,
        verdict=verdict,
        measures=measures,
        words=words,
        contexts=contexts,
        clusters=_clusters(clusters, index, cfg.summary_clusters) if changed else [],
        samples=samples,
        alpha=cfg.amplify_alpha,
        lines=[],
    )
    summary.lines = _lines(summary)
    return summary


SUMMARY_HOW = (
    "How to read: the first line says whether the fine-tune changed anything measurable; then "
    "come the words it predicts more often (whole words, strongest first), the contexts where "
    "its predictions differ most from the base model's, the words its most changed neurons "
    "share, and samples that exaggerate the change. Words that recur across these lines are "
    "what the fine-tune is about."
)


def render_summary(summary: dict[str, Any]) -> str:
    """The summary as an HTML section (id `summary`), its verdict first."""
    esc = html.escape
    lines = summary["lines"]
    items = "".join(f"<li>{esc(line)}</li>" for line in lines[1:])
    return (
        '<section id="summary"><h2>Summary</h2>'
        f'<p class="how">{esc(SUMMARY_HOW)}</p>'
        f'<p class="verdict"><b>{esc(lines[0])}</b></p>'
        f"<ul>{items}</ul></section>"
    )
