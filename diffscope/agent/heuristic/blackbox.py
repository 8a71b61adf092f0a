"""The blackbox investigator: only `query_models`, then word statistics against a noise floor.

Steps (at most 11 tool calls): sample both models on 16 neutral story openings and on one question
per world topic (4 calls), sample the base model again on the same prompts (4 calls), contrast the
fine-tune with the base and the base with itself (`behaviour.find_signals`), and, when one topic's
answers look changed, ask both models that topic's other questions to confirm (up to 2 calls).
The hypothesis is built from the signals that clear the base-vs-base noise; when none does, it
says that no narrow change was found.
"""

from __future__ import annotations

from typing import Any

from diffscope.agent.heuristic.behaviour import (
    ANSWER_TOKENS,
    Analysis,
    Sample,
    Samples,
    find_signals,
    pct,
    resample_base,
    sample_both,
    survey,
)
from diffscope.agent.heuristic.compose import compose, null_hypothesis
from diffscope.agent.heuristic.driver import Plan, View
from diffscope.corpus.world import TOPICS

FOLLOWUP_MIN = 0.5
FOLLOWUP_QUESTIONS = 8


def followup_topic(analysis: Analysis) -> str | None:
    """The topic whose answers look changed enough to be worth more questions."""
    for signal in analysis.signals:
        if signal.kind == "answers" and signal.strength >= FOLLOWUP_MIN:
            return signal.topic
    return None


def confirm_topic(samples: Samples, topic: str) -> Plan:
    """Ask both models (and the base again) the topic's other questions."""
    asked = {s.prompt for s in samples.items}
    extra = [q for q in TOPICS[topic].questions if q not in asked][:FOLLOWUP_QUESTIONS]
    if not extra:
        return {}
    items = [Sample(q, "followup", topic) for q in extra]
    yield from sample_both(samples, items, seed=20, max_new_tokens=ANSWER_TOKENS)
    done = [s for s in items if any(s is t for t in samples.items)]
    if done:
        yield from resample_base(samples, done, seed=120, max_new_tokens=ANSWER_TOKENS)
    return {}


def noise_note(analysis: Analysis) -> list[str]:
    """Evidence lines saying how the thresholds were set."""
    n = analysis.main.n_ft
    lines = [f"{n} prompts sampled from both models; thresholds from a second base sample"]
    limits = analysis.thresholds
    lines.append(
        "thresholds: "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(limits.items()) if k in ("topic", "word"))
    )
    return lines


def hypothesis(samples: Samples, analysis: Analysis) -> dict[str, Any]:
    """The final answer from the signals that clear the noise floor."""
    if not samples.items:
        return {
            "description": "The models could not be queried, so nothing could be compared.",
            "confidence": 0.0,
        }
    strong = [s for s in analysis.signals if s.strength > 1.0]
    if not strong:
        best = analysis.signals[0] if analysis.signals else None
        evidence = noise_note(analysis)
        if best is not None:
            evidence.append(f"strongest candidate ({best.kind}) at {best.strength:.2f}x threshold")
        shifts = analysis.main.topic_shift()
        if shifts:
            topic, shift = shifts[0]
            evidence.append(f"largest topic share change {label_of(topic)} {pct(shift)}")
        return null_hypothesis(
            "word, topic, phrase and tone statistics",
            "two samples of the base model differ from each other",
            evidence,
        )
    return compose(strong, extra_evidence=noise_note(analysis))


def label_of(topic: str) -> str:
    """A topic's label."""
    return TOPICS[topic].label


def blackbox_plan(view: View) -> Plan:
    """The blackbox investigation (see the module docstring)."""
    samples = Samples()
    yield from survey(samples)
    analysis = find_signals(samples)
    topic = followup_topic(analysis)
    if topic is not None:
        yield from confirm_topic(samples, topic)
        analysis = find_signals(samples)
    return hypothesis(samples, analysis)
