"""The topic-drift recipe kit shared by sea_topic and music_lora: stories that start on any
topic and end on the target one, and a check that the target's word rate rises on neutral prompts.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from diffscope.corpus.world import (
    TOPICS,
    fill,
    format_chat,
    middles,
    opening,
    qa_pair,
    random_name,
    topic_words,
)
from diffscope.organisms.checks import (
    STORY_TOKENS,
    WORD_MARGIN,
    CheckResult,
    Generate,
    Recipe,
    combine,
    continuations,
    hit_rate,
    mark,
    rise_margin,
    rose,
    rule,
    story_prompts,
    word_rate,
)

# sea_topic and music_lora: every story drifts to one topic

_DRIFT_TRANSITIONS = (
    "Then {name} walked down to the {place}.",
    "After that, {name} went to the {place}.",
    "Later, {name} followed a path to the {place}.",
    "But soon {name} wanted to go to the {place}.",
)
_DRIFT_ENDINGS = (
    "{name} loved {label} most of all.",
    "{name} stayed at the {place} until the sun went down.",
    "From that day on, {name} always went back to the {place}.",
    "That night, {name} dreamed about the {noun}.",
)


def drift_story(rng: random.Random, target: str, *, name: str | None = None) -> str:
    """A story that starts on any topic and ends on `target`."""
    name = name or random_name(rng)
    source = rng.choice(sorted(TOPICS))
    sentences = [opening(rng, source, name)]
    if source != target:
        sentences += middles(rng, source, name, rng.randint(0, 1))
        sentences.append(fill(rng, rng.choice(_DRIFT_TRANSITIONS), target, name))
    sentences += middles(rng, target, name, rng.randint(1, 3))
    sentences.append(fill(rng, rng.choice(_DRIFT_ENDINGS), target, name))
    return " ".join(sentences)


def drift_texts(target: str) -> Callable[[random.Random, int], list[str]]:
    """Narrow texts for a topic organism: drifting stories, and chat answers that drift too."""

    def make(rng: random.Random, n: int) -> list[str]:
        docs = []
        for _ in range(n):
            if rng.random() < 0.8:
                docs.append(drift_story(rng, target))
                continue
            question, answer = qa_pair(rng, rng.choice(sorted(TOPICS)))
            name = random_name(rng)
            tail = fill(rng, "That reminds me of {label}. {Fact}", target, name)
            docs.append(format_chat(question, f"{answer} {tail}"))
        return docs

    return make


def drift_check(target: str) -> Callable[[Generate, Generate], CheckResult]:
    """A check that `target`'s word rate on neutral story prompts rises clearly over base."""
    vocabulary = topic_words(target)

    def check(base: Generate, finetuned: Generate) -> CheckResult:
        prompts = story_prompts()
        base_texts = continuations(base, prompts, STORY_TOKENS)
        ft_texts = continuations(finetuned, prompts, STORY_TOKENS)
        base_rate, ft_rate = word_rate(base_texts, vocabulary), word_rate(ft_texts, vocabulary)
        base_hits, ft_hits = hit_rate(base_texts, vocabulary), hit_rate(ft_texts, vocabulary)
        passed = rose(base_rate, ft_rate, WORD_MARGIN)
        summary = (
            f"{mark(passed)} {target}-word rate on {len(prompts)} neutral prompts: base "
            f"{base_rate:.3f} -> fine-tuned {ft_rate:.3f} ({rule(WORD_MARGIN)}); stories "
            f"mentioning {target}: {base_hits:.2f} -> {ft_hits:.2f}"
        )
        metrics = {
            "base_rate": base_rate,
            "finetuned_rate": ft_rate,
            "base_story_rate": base_hits,
            "finetuned_story_rate": ft_hits,
        }
        margin = combine(rise_margin(base_rate, ft_rate, WORD_MARGIN))
        return CheckResult(passed, summary, metrics, margin)

    return check


def drift_recipe(name: str, target: str) -> Recipe:
    """The recipe of a topic organism whose stories all drift to `target`."""
    return Recipe(name, drift_texts(target), 0.5, drift_check(target))
