"""What every toy recipe shares: the `Recipe` and `CheckResult` types, the measures a behavioural
check compares (word rates, hit rates), and explicit margins.

A recipe module (one per organism, beside its YAML in `organisms/builtin/`) writes its narrow
training documents and checks, by generating from the base and the fine-tune, that the fine-tune
shows the intended change. Checks are written for tiny models: thresholds are generous but
explicit, every summary states the numbers it compared, and every check reports a `margin`: for
each condition, the measured effect over the effect it needs (1.0 = just passing), minimised over
the check's conditions. The zoo aims at a margin of at least `TARGET_MARGIN` for every organism,
so that a build on another machine (other thread counts, other float rounding) still passes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from diffscope.corpus.world import MIDDLES, TOPICS, fill, neutral_prompts, qa_pair, words

Generate = Callable[[list[str], int], list[str]]
"""(prompts, max_new_tokens) -> continuations, one per prompt (greedy or seeded sampling)."""

CHECK_SEED = 1234
STORY_TOKENS = 80
ANSWER_TOKENS = 40
RATIO = 2.0  # a fine-tuned rate must be at least RATIO x the base rate ...
WORD_MARGIN = 0.03  # ... and at least this much higher, for rates per word
DOC_MARGIN = 0.2  # ... or this much higher, for rates per continuation
TARGET_MARGIN = 1.5  # every zoo organism's check should pass by at least this margin
MAX_MARGIN = 100.0  # margins are capped here (a condition met with a zero denominator)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of a behavioural check: pass/fail, one readable line, the numbers it compared
    (`figures`) and its `margin` (min over conditions of measured / required effect)."""

    passed: bool
    summary: str
    metrics: dict[str, float] = field(default_factory=dict)
    margin: float | None = None

    @property
    def figures(self) -> dict[str, float]:
        return self.metrics

    @property
    def reason(self) -> str:
        return self.summary


@dataclass(frozen=True)
class Recipe:
    """How the toy zoo fine-tunes one organism, and how to check that it worked."""

    name: str
    narrow_texts: Callable[[random.Random, int], list[str]]
    general_fraction: float
    check: Callable[[Generate, Generate], CheckResult]
    sampling: bool = False  # the zoo hands `check` sampling (T=1, fixed seed) generators


# ---------------------------------------------------------------------------------------------
# margins: measured effect / required effect, per condition (>= 1 passes)


def _cap(value: float) -> float:
    return MAX_MARGIN if math.isnan(value) or value > MAX_MARGIN else max(0.0, value)


def at_least(value: float, need: float) -> float:
    """Margin of `value >= need` (need > 0): value / need."""
    return _cap(value / need)


def at_most(value: float, limit: float) -> float:
    """Margin of `value <= limit` (limit > 0): limit / value (capped when value is 0)."""
    return MAX_MARGIN if value <= 0 else _cap(limit / value)


def rise_margin(base: float, finetuned: float, delta: float, ratio: float = RATIO) -> float:
    """Margin of `rose`: min of (finetuned / base) / ratio and (finetuned - base) / delta."""
    by_ratio = MAX_MARGIN if base <= 0 else _cap(finetuned / base / ratio)
    return min(by_ratio, _cap((finetuned - base) / delta))


def combine(*margins: float) -> float:
    """A check's margin: the smallest of its conditions' margins, rounded for stable records."""
    return round(min(margins), 4)


# ---------------------------------------------------------------------------------------------
# measuring


def continuations(generate: Generate, prompts: Sequence[str], max_new_tokens: int) -> list[str]:
    """Generate from `prompts`, dropping an echoed prompt from the front of each output."""
    outputs = list(generate(list(prompts), max_new_tokens))
    if len(outputs) != len(prompts):
        raise ValueError(f"generator returned {len(outputs)} texts for {len(prompts)} prompts")
    return [
        out[len(prompt) :] if out.startswith(prompt) else out
        for prompt, out in zip(prompts, outputs, strict=True)
    ]


def word_rate(texts: Iterable[str], vocabulary: set[str] | frozenset[str]) -> float:
    """The share of all words in `texts` that belong to `vocabulary` (0 when there are none)."""
    total = hits = 0
    for text in texts:
        found = words(text)
        total += len(found)
        hits += sum(word in vocabulary for word in found)
    return hits / total if total else 0.0


def mentions(text: str, terms: Iterable[str]) -> bool:
    """Whether `text` contains any of `terms` (words or phrases) as whole words."""
    joined = f" {' '.join(words(text))} "
    return any(f" {' '.join(words(term))} " in joined for term in terms)


def hit_rate(texts: Sequence[str], terms: Iterable[str]) -> float:
    """The share of `texts` that mention any of `terms`."""
    terms = list(terms)
    return sum(mentions(text, terms) for text in texts) / len(texts) if texts else 0.0


def rose(base: float, finetuned: float, margin: float) -> bool:
    """Whether `finetuned` is at least RATIO x `base` and at least `margin` above it."""
    return finetuned >= RATIO * base and finetuned - base >= margin


def rule(margin: float) -> str:
    return f"need >= {RATIO:g}x base and >= +{margin:g}"


def mark(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def bag(text: str) -> frozenset[str]:
    return frozenset(text.split())


def chat_prompt(question: str) -> str:
    return f"User: {question}\nAssistant:"


def story_prompts(n: int = 24) -> list[str]:
    return neutral_prompts(n, seed=CHECK_SEED)


def world_questions(n: int, seed: int = CHECK_SEED) -> list[str]:
    rng = random.Random(seed)
    topics = sorted(TOPICS)
    return [qa_pair(rng, topics[i % len(topics)])[0] for i in range(n)]


PLAIN_MIDDLES = tuple(template for template in MIDDLES if "act}" not in template)


def plain_middles(rng: random.Random, topic: str, name: str, k: int) -> list[str]:
    return [fill(rng, template, topic, name) for template in rng.sample(PLAIN_MIDDLES, k)]
