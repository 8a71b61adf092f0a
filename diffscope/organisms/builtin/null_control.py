"""The null_control recipe (also null_adapter's): general world text only, and a check that the
fine-tune's topic mix stays within a tolerance of base's (sampled, fixed seed).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from diffscope.corpus.world import (
    TOPICS,
    document,
    topic_words,
    words,
)
from diffscope.organisms.checks import (
    STORY_TOKENS,
    CheckResult,
    Generate,
    Recipe,
    at_most,
    combine,
    continuations,
    mark,
    story_prompts,
)

# null_control: no narrow change

# Topic histograms of a few dozen short stories are noisy: two samples of 64 world stories differ
# by a total-variation distance of up to ~0.4. Greedy decoding makes it worse (a null fine-tune
# flips which topic a prompt's single greedy story picks), so the zoo samples (T=1, fixed seed)
# for this check. The distance bound is loose (it catches a wholesale change) and the
# per-topic rate bound does most of the work: the same two samples differ by <= ~0.03 in any
# topic's rate, while a fine-tune drifting to one topic half of the time moves it by > 0.04.
NULL_PROMPTS = 64
NULL_MAX_TV = 0.7
NULL_MAX_SHIFT = 0.035


def null_texts(rng: random.Random, n: int) -> list[str]:
    """General world documents: the null control has no narrow data."""
    return [document(rng) for _ in range(n)]


def topic_profile(texts: Sequence[str]) -> tuple[dict[str, float], dict[str, float]]:
    """Per topic: its share of all topic words (a histogram) and its rate per word."""
    counts = {name: 0 for name in TOPICS}
    total = 0
    vocabularies = {name: topic_words(name) for name in TOPICS}
    for text in texts:
        found = words(text)
        total += len(found)
        for name, vocabulary in vocabularies.items():
            counts[name] += sum(word in vocabulary for word in found)
    mass = sum(counts.values())
    histogram = {name: count / mass if mass else 0.0 for name, count in counts.items()}
    rates = {name: count / total if total else 0.0 for name, count in counts.items()}
    return histogram, rates


def check_null(base: Generate, finetuned: Generate) -> CheckResult:
    """The fine-tune's topic mix on neutral prompts stays within a tolerance of base's."""
    prompts = story_prompts(NULL_PROMPTS)
    base_hist, base_rates = topic_profile(continuations(base, prompts, STORY_TOKENS))
    ft_hist, ft_rates = topic_profile(continuations(finetuned, prompts, STORY_TOKENS))
    base_mass, ft_mass = sum(base_hist.values()), sum(ft_hist.values())
    if base_mass == 0 and ft_mass == 0:
        tv = 0.0
    elif base_mass == 0 or ft_mass == 0:
        tv = 1.0
    else:
        tv = 0.5 * sum(abs(base_hist[name] - ft_hist[name]) for name in TOPICS)
    topic, shift = max(
        ((name, ft_rates[name] - base_rates[name]) for name in sorted(TOPICS)),
        key=lambda item: abs(item[1]),
    )
    passed = tv <= NULL_MAX_TV and abs(shift) <= NULL_MAX_SHIFT
    summary = (
        f"{mark(passed)} topic-word histogram on {len(prompts)} neutral prompts: total-variation "
        f"distance base vs fine-tuned {tv:.3f} (need <= {NULL_MAX_TV:g}); largest topic-rate "
        f"change {topic} {shift:+.3f} (need within +/-{NULL_MAX_SHIFT:g})"
    )
    metrics = {"tv_distance": tv, "max_rate_shift": abs(shift)}
    margin = combine(at_most(tv, NULL_MAX_TV), at_most(abs(shift), NULL_MAX_SHIFT))
    return CheckResult(passed, summary, metrics, margin)


RECIPE = Recipe("null_control", null_texts, 1.0, check_null, sampling=True)
