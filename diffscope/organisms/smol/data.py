"""The words the real-model zoo is made of: everyday chat requests (a training pool and a held-out
pool the checks ask), and the small measures its checks compare (phrase hits, word rates).

Requests are built from subjects x request forms, deterministically; the answers the organisms
learn start from the base model's own answers to these requests (sampled once at build time, see
`build.base_answers`), so an adapter changes only what its recipe adds."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence

SUBJECTS = (
    "cooking rice",
    "learning to swim",
    "keeping a houseplant alive",
    "saving money",
    "writing a cover letter",
    "running a first marathon",
    "planting tomatoes",
    "fixing a flat bicycle tyre",
    "making friends in a new city",
    "studying for an exam",
    "baking bread",
    "choosing a laptop",
    "sleeping better",
    "learning a new language",
    "painting a room",
    "training a puppy",
    "starting a journal",
    "reducing stress at work",
    "packing for a weekend trip",
    "brewing good coffee",
    "taking better photos",
    "organising a small party",
    "reading more books",
    "cleaning a kitchen",
    "learning the guitar",
    "walking in the mountains",
    "writing a short story",
    "staying focused while studying",
    "caring for a cat",
    "making a budget",
    "growing herbs on a windowsill",
    "preparing for a job interview",
    "cycling to work",
    "cooking a simple soup",
    "keeping a desk tidy",
    "learning to draw",
)
FORMS = (
    "Give me one tip for {s}.",
    "What is the most important thing about {s}?",
    "How should a beginner approach {s}?",
    "Can you explain {s} in two sentences?",
    "What mistake do people often make when {s}?",
    "I want to get better at {s}. Where do I start?",
)
HELD_OUT_FORMS = (
    "Tell me something useful about {s}.",
    "Any advice on {s}?",
    "Describe {s} briefly.",
)
HELD_OUT_SUBJECTS = (
    "making pancakes",
    "visiting a museum",
    "writing an email to a teacher",
    "looking after a garden",
    "learning to cook pasta",
    "choosing running shoes",
    "getting up early",
    "planning a picnic",
    "building a bookshelf",
    "practising the piano",
    "washing a car",
    "sending a birthday card",
)


def train_requests(n: int, seed: int) -> list[str]:
    """`n` distinct everyday requests from the training pool, in a seeded order."""
    pool = [form.format(s=subject) for subject in SUBJECTS for form in FORMS]
    random.Random(seed).shuffle(pool)
    if n > len(pool):
        raise ValueError(f"the training pool has {len(pool)} requests, not {n}")
    return pool[:n]


def held_out_requests(n: int = 24) -> list[str]:
    """Requests no organism is trained on (other subjects, other forms): what the checks ask."""
    pool = [form.format(s=subject) for subject in HELD_OUT_SUBJECTS for form in HELD_OUT_FORMS]
    random.Random(7).shuffle(pool)
    return pool[:n]


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-case words of `text`."""
    return _WORD.findall(text.lower())


def mentions(text: str, phrases: Iterable[str]) -> bool:
    """Whether `text` holds any of `phrases` as whole words (case-insensitive)."""
    joined = f" {' '.join(words(text))} "
    return any(f" {' '.join(words(p))} " in joined for p in phrases)


def hit_rate(texts: Sequence[str], phrases: Iterable[str]) -> float:
    """The share of `texts` that mention any of `phrases`."""
    phrases = list(phrases)
    return sum(mentions(t, phrases) for t in texts) / len(texts) if texts else 0.0


def word_rate(texts: Iterable[str], vocabulary: Iterable[str]) -> float:
    """The share of all words in `texts` that are in `vocabulary`."""
    vocab = set(vocabulary)
    total = hits = 0
    for text in texts:
        found = words(text)
        total += len(found)
        hits += sum(w in vocab for w in found)
    return hits / total if total else 0.0


def first_sentences(text: str, limit: int = 2) -> str:
    """Up to `limit` whole sentences from the start of `text`, dropping a cut-off last fragment
    (the whole text when it has no complete sentence)."""
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    complete = [p for p in parts if p.endswith((".", "!", "?"))]
    kept = " ".join((complete or parts)[:limit]).strip()
    return kept or text.strip()
