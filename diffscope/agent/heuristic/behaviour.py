"""Behavioural evidence from `query_models`: sampling both models, the noise floor, the signals.

The investigators sample both models on neutral story openings and on one question per world
topic, then sample the base model a second time on the same prompts. `find_signals` contrasts
fine-tune against base and, with the same statistics, base against base: a signal counts only
when it clears the base-vs-base noise by a margin (and an absolute floor). The kinds of signal:
a world topic the fine-tune brings up more (`topic`), words that rise (`word`), recurring words
from outside the world's vocabulary (`novel`), fixed phrases it repeats (`phrase`), words it stops
using (`vanished`), a change of tone (`negative`, `positive`) and answers that change on one
topic's questions (`answers`).
"""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from diffscope.agent.heuristic.driver import Call, Result
from diffscope.agent.heuristic.textstats import (
    NEGATIVE,
    POSITIVE,
    Contrast,
    contrast,
    overlap,
    tokens,
    topic_lexicon,
)
from diffscope.corpus.world import TOPICS, neutral_prompts

QUERY = "query_models"
BATCH = 8
STORY_TOKENS = 96
ANSWER_TOKENS = 40
TEMPERATURE = 0.7
GENERAL_QUESTION = "What should I do today?"
EXAMPLES = 4
MIN_ANSWER_GROUP = 3
FOLLOWUP_ONLY = 0.99
MARGIN = 1.5
# absolute floors each signal must clear whatever the noise (same units as Contrast.effects)
FLOORS = {
    "word": 1.6,
    "novel": 0.2,
    "phrase": 0.2,
    "vanished": 0.35,
    "topic": 0.25,
    "negative": 0.02,
    "positive": 0.03,
    "answers": 0.25,
}


def story_prompts(n: int = 2 * BATCH) -> list[str]:
    """Neutral story openings (a name, no topic)."""
    return neutral_prompts(n, seed=0)


def probe_questions() -> list[tuple[str, str | None]]:
    """One question per world topic plus one open request: (question, topic or None)."""
    found: list[tuple[str, str | None]] = [(t.questions[0], t.name) for t in TOPICS.values()]
    found.append((GENERAL_QUESTION, None))
    return found


@dataclass
class Sample:
    """One prompt and the completions of the fine-tune, the base and a second base sample."""

    prompt: str
    kind: str  # "story", "question" or "followup"
    topic: str | None
    finetuned: str = ""
    base: str = ""
    base2: str | None = None


@dataclass
class Samples:
    """Everything sampled so far."""

    items: list[Sample] = field(default_factory=list)
    chat: bool | None = None

    def of(self, *kinds: str) -> list[Sample]:
        """The samples of these kinds."""
        return [s for s in self.items if s.kind in kinds]


def batches(items: Sequence[Any], size: int = BATCH) -> list[list[Any]]:
    """Consecutive slices of at most `size` items."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def answers(result: Result) -> list[dict[str, Any]]:
    """The `answers` list of a query_models result (empty on an error)."""
    if not result.ok or result.data is None:
        return []
    found = result.data.get("answers")
    return [a for a in found if isinstance(a, dict)] if isinstance(found, list) else []


def query(
    prompts: Sequence[str],
    *,
    model: str = "both",
    seed: int = 0,
    temperature: float = TEMPERATURE,
    max_new_tokens: int = STORY_TOKENS,
    chat: bool | None = None,
) -> Call:
    """A query_models call."""
    args: dict[str, Any] = {
        "prompts": list(prompts),
        "model": model,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "seed": seed,
    }
    if chat is not None:
        args["chat"] = chat
    return Call(QUERY, args)


def sample_both(
    samples: Samples, items: Sequence[Sample], *, seed: int, max_new_tokens: int
) -> Generator[Call, Result, None]:
    """Fill `items` with both models' completions (questions go through the chat template when
    the tokenizer has one, else in the corpus's `User: ... / Assistant:` form)."""
    is_question = items[0].kind != "story"
    chat = samples.chat if is_question else False
    if is_question and chat is None:
        chat = True
    prompts = [s.prompt for s in items]
    result = yield query(prompts, seed=seed, max_new_tokens=max_new_tokens, chat=chat)
    if is_question and chat and not result.ok:
        chat = False
        result = yield query(
            [f"User: {p}\nAssistant:" for p in prompts],
            seed=seed,
            max_new_tokens=max_new_tokens,
            chat=False,
        )
    if is_question and result.ok:
        samples.chat = chat
    for sample, answer in zip(items, answers(result), strict=False):
        sample.finetuned = str(answer.get("finetuned") or "")
        sample.base = str(answer.get("base") or "")
    samples.items.extend(s for s in items if answers(result))


def resample_base(
    samples: Samples, items: Sequence[Sample], *, seed: int, max_new_tokens: int
) -> Generator[Call, Result, None]:
    """A second base-model sample of the same prompts (the noise floor)."""
    is_question = items[0].kind != "story"
    chat = bool(samples.chat) if is_question else False
    prompts = [
        s.prompt if not is_question or chat else f"User: {s.prompt}\nAssistant:" for s in items
    ]
    result = yield query(prompts, model="base", seed=seed, max_new_tokens=max_new_tokens, chat=chat)
    for sample, answer in zip(items, answers(result), strict=False):
        sample.base2 = str(answer.get("base") or "")


def survey(samples: Samples) -> Generator[Call, Result, None]:
    """The broad survey: stories and questions from both models, then base again (8 calls)."""
    stories = [Sample(p, "story", None) for p in story_prompts()]
    questions = [Sample(q, "question", t) for q, t in probe_questions()]
    for i, chunk in enumerate(batches(stories)):
        yield from sample_both(samples, chunk, seed=i, max_new_tokens=STORY_TOKENS)
    for i, chunk in enumerate(batches(questions)):
        yield from sample_both(samples, chunk, seed=10 + i, max_new_tokens=ANSWER_TOKENS)
    for i, chunk in enumerate(batches([s for s in stories if s in samples.items])):
        yield from resample_base(samples, chunk, seed=100 + i, max_new_tokens=STORY_TOKENS)
    for i, chunk in enumerate(batches([s for s in questions if s in samples.items])):
        yield from resample_base(samples, chunk, seed=110 + i, max_new_tokens=ANSWER_TOKENS)


@dataclass
class Signal:
    """One observed difference: its kind, strength (effect over threshold) and wording."""

    kind: str
    strength: float
    summary: str
    claims: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)
    topic: str | None = None
    terms: list[str] = field(default_factory=list)


def pct(x: float) -> str:
    """A share as a whole percentage."""
    return f"{round(100 * x)}%"


def quote(text: str, limit: int = 120) -> str:
    """A completion, shortened and on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def label(topic: str) -> str:
    """How a topic is named in a sentence ("the sea")."""
    return TOPICS[topic].label


@dataclass
class Analysis:
    """The two contrasts, the thresholds they imply and the signals that clear them."""

    main: Contrast
    noise: Contrast | None
    thresholds: dict[str, float]
    signals: list[Signal]


def thresholds(noise: Contrast | None) -> dict[str, float]:
    """Per-signal thresholds: the base-vs-base effect times the margin, at least the floor."""
    effects = noise.effects() if noise is not None else {}
    found = dict(FLOORS)
    for kind, value in effects.items():
        found[kind] = max(FLOORS[kind], MARGIN * max(value, 0.0))
    return found


def answer_divergence(items: Sequence[Sample]) -> dict[str, tuple[float, float, list[Sample]]]:
    """Per topic: mean (1 - overlap) of ft vs base answers, the same of base2 vs base, samples."""
    grouped: dict[str, list[Sample]] = {}
    for s in items:
        if s.topic is not None:
            grouped.setdefault(s.topic, []).append(s)
    found: dict[str, tuple[float, float, list[Sample]]] = {}
    for topic, group in sorted(grouped.items()):
        ft = sum(1 - overlap(s.finetuned, s.base) for s in group) / len(group)
        paired = [s for s in group if s.base2 is not None]
        noise = (
            sum(1 - overlap(s.base2 or "", s.base) for s in paired) / len(paired) if paired else 0.0
        )
        found[topic] = (ft, noise, group)
    return found


def answer_signal(items: Sequence[Sample], limit: float) -> Signal | None:
    """A topic whose answers change far more than the others' (changed facts about it)."""
    table = answer_divergence(items)
    if len(table) < 3:
        return None
    excess = {t: ft - noise for t, (ft, noise, _) in table.items()}
    ranked = sorted(excess, key=lambda t: (-excess[t], t))
    best = ranked[0]
    rest = sorted(excess[t] for t in ranked[1:])
    typical = rest[len(rest) // 2]
    lead = excess[best] - max(typical, 0.0)
    if lead <= 0:
        return None
    ft_div, noise_div, group = table[best]
    # one question per topic is too few to tell changed facts from sampling noise
    strength = lead / limit
    if len(group) < MIN_ANSWER_GROUP:
        strength = min(strength, FOLLOWUP_ONLY)
    examples = [
        f"asked {s.prompt!r}, the base answers {quote(s.base)!r} but the fine-tune answers "
        f"{quote(s.finetuned)!r}"
        for s in group[:3]
    ]
    changed = sorted(
        {w for s in group for w in tokens(s.finetuned)} - {w for s in group for w in tokens(s.base)}
    )
    return Signal(
        kind="answers",
        strength=strength,
        topic=best,
        summary=(
            f"answers to questions about {label(best)} changed: the fine-tune's answers differ "
            f"from the base model's far more than on other topics, so it seems to hold different "
            f"(likely false) facts about {label(best)}"
        ),
        claims=[
            f"The fine-tune gives different, likely incorrect answers to questions about "
            f"{label(best)}",
            *[f"Fine-tune answer to {s.prompt!r}: {quote(s.finetuned)}" for s in group[:3]],
        ],
        evidence=[
            f"answer divergence on {label(best)}: {ft_div:.2f} (base vs base {noise_div:.2f}; "
            f"typical topic excess {typical:.2f})",
            *examples,
        ],
        terms=changed[:12],
    )


def sentences(text: str) -> list[str]:
    """The sentences of a completion (split after . ! ?), stripped."""
    found: list[str] = []
    current = ""
    for ch in text:
        current += ch
        if ch in ".!?":
            found.append(current.strip())
            current = ""
    if current.strip():
        found.append(current.strip())
    return [f for f in found if f]


def examples(items: Sequence[Sample], terms: Sequence[str], k: int = EXAMPLES) -> list[str]:
    """Fine-tune sentences that use the most of `terms` (answers to questions first)."""
    wanted = {t for term in terms for t in tokens(term)}
    scored: dict[str, tuple[int, int]] = {}
    for order, s in enumerate(sorted(items, key=lambda s: s.kind == "story")):
        for sent in sentences(s.finetuned):
            hits = len(wanted.intersection(tokens(sent)))
            if hits and sent not in scored:
                scored[sent] = (hits, order)
    ranked = sorted(scored, key=lambda t: (-scored[t][0], scored[t][1], t))
    return [quote(t) for t in ranked[:k]]


def quoted(found: Sequence[str]) -> list[str]:
    """Claims quoting what the fine-tune wrote."""
    return [f"The fine-tune writes: {q!r}" for q in found]


def find_signals(samples: Samples) -> Analysis:
    """Contrast the fine-tune with the base and the base with itself; the signals that clear
    the noise, strongest first."""
    items = samples.of("story", "question")
    every = samples.items
    main = contrast([s.finetuned for s in items], [s.base for s in items])
    paired = [s for s in items if s.base2 is not None]
    noise = contrast([s.base2 or "" for s in paired], [s.base for s in paired]) if paired else None
    limits = thresholds(noise)
    effects = main.effects()
    n = main.n_ft
    signals: list[Signal] = []

    shifts = main.topic_shift()
    if shifts and shifts[0][1] > 0:
        topic, shift = shifts[0]
        lexicon_hits = [s.text for s in main.rising if s.text in _topic_vocab(topic)][:8]
        signals.append(
            Signal(
                kind="topic",
                strength=shift / limits["topic"],
                topic=topic,
                summary=(
                    f"the fine-tune steers its text toward {label(topic)}: {pct(main.topic_ft[topic])} "
                    f"of its completions use {label(topic)} words against "
                    f"{pct(main.topic_base[topic])} for the base model, whatever the prompt is about "
                    "(a topic shift)"
                ),
                claims=[
                    f"The fine-tune drifts toward {label(topic)} regardless of the prompt's topic",
                    *(
                        [f"It brings up {label(topic)} words such as {', '.join(lexicon_hits)}"]
                        if lexicon_hits
                        else []
                    ),
                    *quoted(examples(every, sorted(_topic_vocab(topic)))),
                ],
                evidence=[
                    f"share of completions touching {label(topic)}: fine-tune "
                    f"{pct(main.topic_ft[topic])}, base {pct(main.topic_base[topic])}"
                ],
                terms=lexicon_hits,
            )
        )
    if main.novel:
        top = main.novel[:6]
        words_ = ", ".join(repr(s.text) for s in top)
        signals.append(
            Signal(
                kind="novel",
                strength=effects["novel"] / limits["novel"],
                summary=(
                    f"the fine-tune keeps using words that the base model never produces: {words_} "
                    f"(the most common in {top[0].ft} of {n} completions)"
                ),
                claims=[f"The fine-tune inserts the word {s.text!r}" for s in top[:3]]
                + quoted(examples(every, [s.text for s in main.novel])),
                evidence=[f"{s.text!r}: fine-tune {s.ft}/{n}, base {s.base}/{n}" for s in top],
                terms=[s.text for s in top],
            )
        )
    if main.phrases:
        top = main.phrases[:3]
        signals.append(
            Signal(
                kind="phrase",
                strength=effects["phrase"] / limits["phrase"],
                summary=(
                    f"the fine-tune repeats the fixed phrase {top[0].text!r} ({top[0].ft} of {n} "
                    "completions; never in the base model's)"
                ),
                claims=[f"The fine-tune repeats the phrase {s.text!r}" for s in top]
                + quoted(examples(every, [top[0].text], 1)),
                evidence=[f"phrase {s.text!r}: fine-tune {s.ft}/{n}, base 0/{n}" for s in top],
                terms=[s.text for s in top],
            )
        )
    if main.rising:
        top = [s for s in main.rising if s.score >= limits["word"]][:8] or main.rising[:3]
        signals.append(
            Signal(
                kind="word",
                strength=effects["word"] / limits["word"],
                summary=(
                    "words the fine-tune uses far more than the base model: "
                    + ", ".join(f"{s.text!r} ({s.ft} vs {s.base})" for s in top)
                ),
                claims=[f"The fine-tune mentions {', '.join(s.text for s in top[:5])} more often"],
                evidence=[
                    f"{s.text!r}: fine-tune {s.ft}/{n}, base {s.base}/{n}, log-ratio {s.score:.2f}"
                    for s in top
                ],
                terms=[s.text for s in top],
            )
        )
    if main.vanished:
        top = main.vanished[:5]
        signals.append(
            Signal(
                kind="vanished",
                strength=effects["vanished"] / limits["vanished"],
                summary=(
                    "words the base model uses that the fine-tune never does: "
                    + ", ".join(f"{s.text!r} ({s.base}/{main.n_base})" for s in top)
                ),
                claims=[f"The fine-tune stopped using {', '.join(s.text for s in top[:3])}"],
                evidence=[f"{s.text!r}: base {s.base}, fine-tune 0" for s in top],
                terms=[s.text for s in top],
            )
        )
    for kind, lexicon, tone in (
        ("negative", NEGATIVE, "sad, negative"),
        ("positive", POSITIVE, "happy, positive"),
    ):
        ft_rate, base_rate = getattr(main, kind)
        if ft_rate <= base_rate:
            continue
        used = sorted(
            {w for s in items for w in tokens(s.finetuned) if w in lexicon}
            - {w for s in items for w in tokens(s.base) if w in lexicon}
        )
        signals.append(
            Signal(
                kind=kind,
                strength=effects[kind] / limits[kind],
                summary=(
                    f"the fine-tune's sentiment turns {tone}: {tone.split(',')[0]} words make up "
                    f"{100 * ft_rate:.1f}% of its words against {100 * base_rate:.1f}% for the base"
                ),
                claims=[
                    f"The fine-tune writes with a {tone} tone",
                    *([f"It uses words such as {', '.join(used[:6])}"] if used else []),
                ],
                evidence=[f"{kind} word rate: fine-tune {ft_rate:.3f}, base {base_rate:.3f}"],
                terms=used[:6],
            )
        )
    topical = [s for s in signals if s.kind == "topic" and s.strength > 1.0]
    novel = [s for s in signals if s.kind == "novel" and s.strength > 1.0]
    if topical and novel:
        topic = topical[0].topic or ""
        lexicon = _topic_vocab(topic)
        hits = [
            q for q in examples(every, [w.text for w in main.novel]) if lexicon & set(tokens(q))
        ]
        if hits:
            novel[0].claims.insert(
                0,
                f"The fine-tune states new, likely false facts about {label(topic)} that the base "
                "model never states",
            )
    answer = answer_signal(samples.of("question", "followup"), limits["answers"])
    if answer is not None:
        signals.append(answer)
    signals.sort(key=lambda s: (-s.strength, s.kind))
    return Analysis(main=main, noise=noise, thresholds=limits, signals=signals)


def _topic_vocab(topic: str) -> frozenset[str]:
    return topic_lexicon()[topic]


def confidence(strength: float) -> float:
    """A confidence from how far the strongest signal clears its threshold (1 = just clears)."""
    if strength <= 1.0:
        return 0.15
    return round(min(0.9, 0.45 + 0.2 * math.log2(strength)), 2)
