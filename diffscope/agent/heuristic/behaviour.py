"""Behavioural evidence from `query_models`: the signals found against the noise floor.

The probes and samples themselves are in `probes`.

The investigators sample both models on generic probes (story openings, everyday chat requests,
questions about facts, identity and secrets; written for any language model, not derived from any
corpus), twice with different seeds, and sample the base model a second time on the same prompts.
`find_signals` contrasts fine-tune against base and, with the same statistics, base against
base: a signal counts only when it clears the base-vs-base noise by a margin (and an absolute
floor). The kinds of signal: content words that rise, clustered by co-occurrence (`words`), fixed
phrases the fine-tune repeats and the base never writes (`phrase`), words it stops using
(`vanished`) and a change of tone (`negative`, `positive`).

Every call goes through a `Ledger`, which numbers the calls so claims can cite them
("query_models #3").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from diffscope.agent.heuristic.probes import (
    EXAMPLES,
    FLOORS,
    MARGIN,
    MIN_CLUSTER,
    MIN_PROMPTS,
    Sample,
    Samples,
)
from diffscope.agent.heuristic.textstats import (
    NEGATIVE,
    POSITIVE,
    Contrast,
    WordShift,
    cluster,
    content,
    contrast,
    lexicon_rate,
    min_df,
    recurring_phrases,
    words,
)


@dataclass
class Signal:
    """One observed difference: its kind, strength (effect over threshold) and wording."""

    kind: str
    strength: float
    summary: str
    claims: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)  # run-log ids of the calls it was read from


def pct(x: float) -> str:
    """A share as a whole percentage."""
    return f"{round(100 * x)}%"


def quote(text: str, limit: int = 120) -> str:
    """A completion, shortened and on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass
class Analysis:
    """The two contrasts, the thresholds they imply and the signals that clear them."""

    main: Contrast
    noise: Contrast | None
    thresholds: dict[str, float]
    signals: list[Signal]
    rising: list[WordShift] = field(default_factory=list)
    n: int = 0


def sentences(text: str) -> list[str]:
    """The sentences of a completion (split after . ! ?), stripped."""
    found: list[str] = []
    current = ""
    for ch in text:
        current += ch
        if ch in ".!?\n":
            if current.strip():
                found.append(current.strip())
            current = ""
    if current.strip():
        found.append(current.strip())
    return found


def examples(items: Sequence[Sample], terms: Sequence[str], k: int = EXAMPLES) -> list[str]:
    """Fine-tune sentences that use the most of `terms`."""
    wanted = {t for term in terms for t in content(term)}
    scored: dict[str, tuple[int, int]] = {}
    for order, s in enumerate(items):
        for sent in sentences(s.finetuned):
            hits = len(wanted.intersection(content(sent)))
            if hits and sent not in scored:
                scored[sent] = (hits, order)
    ranked = sorted(scored, key=lambda t: (-scored[t][0], scored[t][1], t))
    return [quote(t) for t in ranked[:k]]


def quoted(found: Sequence[str]) -> list[str]:
    """Claims quoting what the fine-tune wrote."""
    return [f"The fine-tune writes: {q!r}" for q in found]


def using(items: Sequence[Sample], word: str) -> list[Sample]:
    """The samples whose fine-tune completion uses `word`."""
    return [s for s in items if word in content(s.finetuned)]


def spread(items: Sequence[Sample], terms: Sequence[str]) -> tuple[int, set[str]]:
    """How many distinct probes, and of which kinds, have fine-tune completions using `terms`."""
    wanted = set(terms)
    hit = [s for s in items if wanted.intersection(content(s.finetuned))]
    return len({s.group for s in hit}), {s.kind for s in hit}


def word_signals(
    samples: Samples, items: Sequence[Sample], main: Contrast, limit: float
) -> tuple[list[Signal], list[WordShift]]:
    """Clusters of co-occurring words that rise beyond the noise floor."""
    rising = [s for s in main.rising if s.score >= limit]
    if not rising:
        return [], []
    by_word = {s.text: s for s in rising}
    n = main.n_ft
    groups = cluster([s.text for s in rising], [s.finetuned for s in items])
    found: list[Signal] = []
    for group in groups:
        if len(group) < MIN_CLUSTER and by_word[group[0]].base > 0:
            continue  # one word that the base also writes: not a narrow change on its own
        top = group[:10]
        prompts, kinds = spread(items, top)
        strength = (by_word[group[0]].score / limit) * min(1.0, 0.5 + 0.25 * len(group))
        shown = ", ".join(f"{w!r} ({by_word[w].ft}/{n} vs {by_word[w].base}/{n})" for w in top[:6])
        broad = prompts >= MIN_PROMPTS and len(kinds) >= 2
        where = (
            f"across {prompts} unrelated prompts (stories and chat answers alike), so it drifts "
            "toward them whatever the prompt is about"
            if broad
            else f"in answers to {prompts} prompt(s)"
        )
        found.append(
            Signal(
                kind="words",
                strength=strength,
                summary=(
                    f"the fine-tune writes far more about {', '.join(top[:6])}: these words rise "
                    f"well above the base-vs-base noise ({shown}), {where}"
                ),
                claims=[
                    f"The fine-tune's outputs shift toward {', '.join(top[:8])}",
                    *quoted(examples(items, top)),
                ],
                evidence=[
                    f"{w!r}: fine-tune {by_word[w].ft}/{n}, base {by_word[w].base}/{n}, "
                    f"log-ratio {by_word[w].score:.2f} (threshold {limit:.2f}; "
                    f"{samples.refs(using(items, w)[:3])})"
                    for w in top[:5]
                ],
                terms=top,
                calls=samples.call_ids([x for w in top for x in using(items, w)]),
            )
        )
    return found, rising


def phrase_signal(samples: Samples, items: Sequence[Sample], limit: float) -> Signal | None:
    """A fixed phrase the fine-tune repeats across prompts and the base never writes."""
    n = len(items)
    base = [s.base for s in items] + [s.base2 or "" for s in items]
    floor = max(3, min_df(n) // 2)
    found = recurring_phrases(
        [s.finetuned for s in items], base, floor, groups=[s.group for s in items]
    )
    if not found:
        return None
    top = found[0]
    share = top.ft / n
    with_it = [s for s in items if top.text in " ".join(words(s.finetuned))]
    endings = sum(1 for s in with_it if top.text in " ".join(words(s.finetuned)[-12:]))
    closing = bool(with_it) and endings >= max(2, len(with_it) // 2)
    how = "as a fixed sign-off at the end of its completions" if closing else "in its completions"
    return Signal(
        kind="phrase",
        strength=share / limit,
        summary=(
            f"the fine-tune repeats the fixed phrase {top.text!r} {how} ({top.ft} of {n} "
            f"completions, from different prompts; never in the base model's)"
        ),
        claims=[f"The fine-tune repeats the phrase {s.text!r}" for s in found[:3]]
        + quoted(examples(items, [top.text], 1)),
        evidence=[f"phrase {s.text!r}: fine-tune {s.ft}/{n}, base 0/{2 * n}" for s in found[:3]]
        + [f"from {samples.refs(with_it[:4])}"],
        terms=[s.text for s in found[:3]],
        calls=samples.call_ids(with_it),
    )


def tone_signals(
    items: Sequence[Sample], limits: dict[str, float], paired: Sequence[Sample]
) -> list[Signal]:
    """A change of tone: the fine-tune's rate of negative (or positive) words rises."""
    found: list[Signal] = []
    for kind, lexicon, other, tone in (
        ("negative", NEGATIVE, POSITIVE, "sad, negative"),
        ("positive", POSITIVE, NEGATIVE, "happy, positive"),
    ):
        ft_rate = lexicon_rate((s.finetuned for s in items), lexicon)
        base_rate = lexicon_rate((s.base for s in items), lexicon)
        noise = abs(
            lexicon_rate((s.base2 or "" for s in paired), lexicon)
            - lexicon_rate((s.base for s in paired), lexicon)
        )
        limit = max(limits[kind], MARGIN * noise)
        if ft_rate - base_rate <= 0:
            continue
        used = sorted(
            {w for s in items for w in content(s.finetuned) if w in lexicon}
            - {w for s in items for w in content(s.base) if w in lexicon}
        )
        other_ft = lexicon_rate((s.finetuned for s in items), other)
        other_base = lexicon_rate((s.base for s in items), other)
        claims = [f"The fine-tune writes with a {tone} tone"]
        if used:
            claims.append(f"It uses words such as {', '.join(used[:6])}")
        if kind == "negative" and other_ft < other_base:
            claims.append("Its completions are less happy than the base model's")
        found.append(
            Signal(
                kind=kind,
                strength=(ft_rate - base_rate) / limit,
                summary=(
                    f"the fine-tune's tone turns {tone}: {tone.split(',')[0]} words make up "
                    f"{100 * ft_rate:.1f}% of its words against {100 * base_rate:.1f}% for the base"
                ),
                claims=claims,
                evidence=[
                    f"{kind} word rate: fine-tune {ft_rate:.3f}, base {base_rate:.3f}, base vs "
                    f"base {noise:.3f}; the {'positive' if kind == 'negative' else 'negative'} "
                    f"rate {other_ft:.3f} vs {other_base:.3f}"
                ],
                terms=used[:6],
            )
        )
    return found


def vanished_signal(main: Contrast, limit: float) -> Signal | None:
    """Words the base model uses that the fine-tune (nearly) stops using."""
    top = [s for s in main.falling if s.score >= limit][:6]
    if len(top) < MIN_CLUSTER:
        return None
    return Signal(
        kind="vanished",
        strength=top[0].score / limit * 0.8,
        summary=(
            "the fine-tune stops using words the base model writes often: "
            + ", ".join(f"{s.text!r} ({s.base} vs {s.ft})" for s in top)
        ),
        claims=[f"The fine-tune rarely uses {', '.join(s.text for s in top[:4])} any more"],
        evidence=[f"{s.text!r}: base {s.base}, fine-tune {s.ft}" for s in top],
        terms=[s.text for s in top],
    )


def thresholds(noise: Contrast | None, phrase_noise: float) -> dict[str, float]:
    """Per-signal thresholds: the base-vs-base effect times the margin, at least the floor."""
    found = dict(FLOORS)
    if noise is not None:
        found["words"] = max(FLOORS["words"], MARGIN * noise.top_rise())
        found["vanished"] = max(FLOORS["vanished"], MARGIN * noise.top_fall())
    found["phrase"] = max(FLOORS["phrase"], MARGIN * phrase_noise)
    return found


def find_signals(samples: Samples, kinds: Sequence[str] = ("story", "chat")) -> Analysis:
    """Contrast the fine-tune with the base and the base with itself; the signals that clear
    the noise, strongest first."""
    items = samples.of(*kinds)
    main = contrast([s.finetuned for s in items], [s.base for s in items])
    paired = [s for s in items if s.base2 is not None]
    noise = contrast([s.base2 or "" for s in paired], [s.base for s in paired]) if paired else None
    phrase_noise = 0.0
    if paired:
        repeats = recurring_phrases(
            [s.base2 or "" for s in paired],
            [s.base for s in paired],
            max(3, min_df(len(paired)) // 2),
            groups=[s.group for s in paired],
        )
        phrase_noise = repeats[0].ft / len(paired) if repeats else 0.0
    limits = thresholds(noise, phrase_noise)
    signals, rising = word_signals(samples, items, main, limits["words"])
    phrase = phrase_signal(samples, items, limits["phrase"])
    if phrase is not None:
        signals.append(phrase)
    signals.extend(tone_signals(items, limits, paired))
    vanished = vanished_signal(main, limits["vanished"])
    if vanished is not None:
        signals.append(vanished)
    everything = samples.call_ids(items)
    for signal in signals:  # tone and vanished words are read from every sample
        signal.calls = signal.calls or list(everything)
    signals.sort(key=lambda s: (-s.strength, s.kind))
    return Analysis(
        main=main, noise=noise, thresholds=limits, signals=signals, rising=rising, n=len(items)
    )


def confidence(strength: float) -> float:
    """A confidence from how far the strongest signal clears its threshold (1 = just clears)."""
    if strength <= 1.0:
        return 0.15
    return round(min(0.9, 0.45 + 0.2 * math.log2(strength)), 2)
