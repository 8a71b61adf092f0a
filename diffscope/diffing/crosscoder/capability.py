"""Capability-level diffing: what kinds of latents the fine-tune gained and lost.

The model-specific latents of a crosscoder (candidates ranked by relative decoder norm, kept when
latent scaling gives |nu| below a bound on both targets) are sorted into categories, and the category
counts of the two sides compared, with bootstrap 95% confidence intervals (there are few latents per
side) and the % change from the base-only to the fine-tune-only count.

Labelling is offline by default: a latent's exemplar words (the word at the peak token, and the
words beside it) are matched against the synthetic world's distinctive topic words; "other" when
nothing matches. With an LLM provider (`diffscope.llm.Provider`) each latent is
auto-interpreted from its exemplars into a fixed taxonomy: the world topics plus general capability
categories.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, Field

from diffscope.corpus import TOPICS, topic_words, words
from diffscope.diffing.crosscoder.artifact import NU_MAX, CrosscoderArtifact, Side
from diffscope.diffing.exemplars import Exemplar

if TYPE_CHECKING:
    from diffscope.llm import Provider

OTHER = "other"
GENERAL_CATEGORIES: tuple[str, ...] = (
    "instruction following",
    "chat formatting",
    "safety and refusal",
    "factual knowledge",
    "reasoning",
    "style and tone",
    "emotion and sentiment",
    "multilingual",
    "self-reference",
    "hallucination management",
    "syntax and punctuation",
)
_CATEGORY_LINE = re.compile(r"^\s*category\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def taxonomy() -> list[str]:
    """The fixed label set: the world topics, the general categories, then 'other'."""
    return [*TOPICS, *GENERAL_CATEGORIES, OTHER]


class LatentLabel(BaseModel):
    """The category one model-specific latent was put in, and on what evidence."""

    latent: int
    side: str
    category: str
    nu_reconstruction: float
    nu_error: float
    evidence: list[str] = Field(default_factory=list, description="exemplar words or contexts")
    raw: str = Field("", description="the provider's answer, when a provider labelled it")


class CategoryCount(BaseModel):
    """One category's latent counts on each side, 95% bootstrap intervals and % change."""

    category: str
    finetuned: int
    finetuned_ci: tuple[float, float]
    base: int
    base_ci: tuple[float, float]
    change_pct: float | None = Field(
        None, description="100 * (finetuned - base) / base; None when base is 0"
    )
    change_ci: tuple[float, float] | None = None


class CapabilityReport(BaseModel):
    """Category counts of fine-tune-only versus base-only latents."""

    method: str
    max_nu: float
    n_finetuned: int
    n_base: int
    categories: list[CategoryCount]
    labels: list[LatentLabel]

    def table(self) -> str:
        """A plain-text table, one row per category that either side uses."""
        head = f"{'category':<26} {'ft-only':>8} {'95% CI':>13} {'base-only':>9} {'95% CI':>13}"
        lines = [head + f" {'change':>9}", "-" * (len(head) + 10)]
        for c in self.categories:
            change = "n/a" if c.change_pct is None else f"{c.change_pct:+.0f}%"
            lines.append(
                f"{c.category:<26} {c.finetuned:>8} {_ci(c.finetuned_ci):>13} {c.base:>9} "
                f"{_ci(c.base_ci):>13} {change:>9}"
            )
        lines.append(f"({self.n_finetuned} fine-tune-only, {self.n_base} base-only latents)")
        return "\n".join(lines)


def _ci(ci: tuple[float, float]) -> str:
    return f"[{ci[0]:.0f}, {ci[1]:.0f}]"


# ---------------------------------------------------------------------------------------------
# labelling


def exemplar_words(exemplars: Sequence[Exemplar], neighbours: int = 2) -> list[list[str]]:
    """Per exemplar: the peak word first, then up to `neighbours` words either side of it."""
    found = []
    for ex in exemplars:
        before, _, rest = ex.text.partition("[[")
        _, _, after = rest.partition("]]")
        left = words(before)[-neighbours:] if neighbours else []
        right = words(after)[:neighbours] if neighbours else []
        found.append([ex.word, *left, *right] if ex.word else [*left, *right])
    return found


def label_offline(exemplars: Sequence[Exemplar]) -> str:
    """The world topic whose distinctive words the exemplars hit most ('other' if none).

    A peak word counts 2, a neighbouring word 1; ties go to the topic listed first.
    """
    vocab = {name: topic_words(name) for name in TOPICS}
    score: Counter[str] = Counter()
    for ws in exemplar_words(exemplars):
        for i, w in enumerate(ws):
            for name, bag in vocab.items():
                if w in bag:
                    score[name] += 2 if i == 0 else 1
    if not score:
        return OTHER
    best = max(score.values())
    return next(name for name in TOPICS if score[name] == best)


def label_prompt(exemplars: Sequence[Exemplar], categories: Sequence[str]) -> str:
    """The auto-interpretation prompt for one latent."""
    shown = "\n".join(
        f"{i + 1}. {ex.text}  (activation {ex.value:.2f})" for i, ex in enumerate(exemplars)
    )
    return (
        "You are labelling one latent of a sparse dictionary (a crosscoder) trained on a language "
        "model's activations. Below are the text contexts where it activates most; the token it "
        "fires on is marked [[like this]].\n\n"
        f"{shown}\n\n"
        "Which one category describes what this latent responds to? Choose exactly one of:\n"
        + "\n".join(f"- {c}" for c in categories)
        + "\n\nAnswer with a short reason, then a last line of the form `CATEGORY: <category>`."
    )


def parse_category(text: str, categories: Sequence[str]) -> str:
    """The category named on the last `CATEGORY:` line, matched case-insensitively ('other' when
    there is none or it is not in the taxonomy)."""
    found = _CATEGORY_LINE.findall(text or "")
    if not found:
        return OTHER
    answer = found[-1].strip().strip("`*\"'.").lower()
    for c in categories:
        if answer == c.lower():
            return c
    return OTHER


async def label_with_provider(
    provider: Provider, exemplars: Sequence[Exemplar], categories: Sequence[str]
) -> tuple[str, str]:
    """(category, raw answer) from one auto-interpretation request."""
    from diffscope.llm import Message

    completion = await provider.complete([Message.user(label_prompt(exemplars, categories))], [])
    return parse_category(completion.text, categories), completion.text


# ---------------------------------------------------------------------------------------------
# statistics


def bootstrap_counts(
    labels: Sequence[str],
    categories: Sequence[str],
    n_boot: int = 1000,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Category counts [n_boot, C] of `labels` resampled with replacement."""
    index = {c: i for i, c in enumerate(categories)}
    codes = torch.tensor([index[lab] for lab in labels], dtype=torch.long)
    if codes.numel() == 0:
        return torch.zeros(n_boot, len(categories))
    draws = codes[torch.randint(codes.numel(), (n_boot, codes.numel()), generator=generator)]
    return torch.nn.functional.one_hot(draws, len(categories)).sum(1).double()


def _interval(samples: torch.Tensor) -> tuple[float, float]:
    samples = samples[torch.isfinite(samples)]
    if samples.numel() == 0:
        return (float("nan"), float("nan"))
    lo, hi = torch.quantile(samples.double(), torch.tensor([0.025, 0.975], dtype=torch.float64))
    return (float(lo), float(hi))


def category_counts(
    ft_labels: Sequence[str],
    base_labels: Sequence[str],
    categories: Sequence[str] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[CategoryCount]:
    """Per category: counts on each side with bootstrap 95% intervals and the % change from the
    base count to the fine-tune count (its interval over resamples whose base count is not 0).

    Categories neither side uses are left out; the rest come in taxonomy order.
    """
    cats = list(categories) if categories is not None else taxonomy()
    for lab in [*ft_labels, *base_labels]:
        if lab not in cats:
            raise ValueError(f"label {lab!r} is not in the taxonomy")
    gen = torch.Generator().manual_seed(seed)
    ft_boot = bootstrap_counts(ft_labels, cats, n_boot, gen)
    base_boot = bootstrap_counts(base_labels, cats, n_boot, gen)
    ft_n, base_n = Counter(ft_labels), Counter(base_labels)
    rows = []
    for i, c in enumerate(cats):
        if not ft_n[c] and not base_n[c]:
            continue
        change = None if not base_n[c] else 100.0 * (ft_n[c] - base_n[c]) / base_n[c]
        boot_change = 100.0 * (ft_boot[:, i] - base_boot[:, i]) / base_boot[:, i]
        boot_change = boot_change.masked_fill(base_boot[:, i] == 0, float("nan"))
        rows.append(
            CategoryCount(
                category=c,
                finetuned=ft_n[c],
                finetuned_ci=_interval(ft_boot[:, i]),
                base=base_n[c],
                base_ci=_interval(base_boot[:, i]),
                change_pct=change,
                change_ci=None if change is None else _interval(boot_change),
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------
# the report


async def capability_report_async(
    artifact: CrosscoderArtifact,
    *,
    provider: Provider | None = None,
    max_nu: float = NU_MAX,
    n_exemplars: int = 8,
    n_boot: int = 1000,
    seed: int = 0,
) -> CapabilityReport:
    """The capability report of a crosscoder artifact (offline labels, or a provider's)."""
    if n_exemplars < 1:
        raise ValueError(f"n_exemplars must be >= 1, got {n_exemplars}")
    cats = taxonomy()
    labels: list[LatentLabel] = []
    sides: tuple[Side, ...] = ("finetuned", "base")
    for side in sides:
        for latent in artifact.specific(side, max_nu):
            exemplars = artifact.exemplars(latent, n_exemplars)
            nu = artifact.nu(latent, side) or (float("nan"), float("nan"))
            raw = ""
            if provider is None:
                category = label_offline(exemplars)
                evidence = [ws[0] for ws in exemplar_words(exemplars) if ws]
            else:
                category, raw = await label_with_provider(provider, exemplars, cats)
                evidence = [ex.text for ex in exemplars]
            labels.append(
                LatentLabel(
                    latent=latent,
                    side=side,
                    category=category,
                    nu_reconstruction=nu[0],
                    nu_error=nu[1],
                    evidence=evidence,
                    raw=raw,
                )
            )
    ft = [lab.category for lab in labels if lab.side == "finetuned"]
    base = [lab.category for lab in labels if lab.side == "base"]
    method = "offline" if provider is None else f"provider:{getattr(provider, 'name', 'llm')}"
    return CapabilityReport(
        method=method,
        max_nu=max_nu,
        n_finetuned=len(ft),
        n_base=len(base),
        categories=category_counts(ft, base, cats, n_boot=n_boot, seed=seed),
        labels=labels,
    )


def capability_report(artifact: CrosscoderArtifact, **kw: Any) -> CapabilityReport:
    """Synchronous `capability_report_async` (not for use inside a running event loop)."""
    return asyncio.run(capability_report_async(artifact, **kw))
