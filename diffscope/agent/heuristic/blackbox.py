"""The blackbox investigator: only `query_models`, then word statistics against a noise floor.

Steps (12 tool calls): sample both models on generic probes (story openings, everyday chat
requests, questions about facts, identity and secrets) with two seeds, and the base model again
on the same prompts as the noise floor (`behaviour.survey`); contrast the fine-tune with the base
and the base with itself (`behaviour.find_signals`). The hypothesis names the words and phrases
that rise, fall or newly appear beyond the base-vs-base floor, clustered by co-occurrence; when
nothing clears the floor it says that no narrow change was found.
"""

from __future__ import annotations

from typing import Any

from diffscope.agent.heuristic.behaviour import Analysis, find_signals
from diffscope.agent.heuristic.compose import compose, null_hypothesis
from diffscope.agent.heuristic.driver import Plan, View
from diffscope.agent.heuristic.probes import Samples, survey


def noise_note(samples: Samples, analysis: Analysis) -> list[str]:
    """Evidence lines saying how the thresholds were set."""
    limits = analysis.thresholds
    calls = samples.refs(samples.items)
    return [
        f"{analysis.n} completions of generic probes from both models, thresholds from a second "
        f"base sample ({calls})",
        "thresholds: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(limits.items())),
    ]


def hypothesis(samples: Samples, analysis: Analysis) -> dict[str, Any]:
    """The final answer from the signals that clear the noise floor."""
    if not samples.items:
        return {
            "description": "The models could not be queried, so nothing could be compared.",
            "confidence": 0.0,
        }
    strong = [s for s in analysis.signals if s.strength > 1.0]
    if not strong:
        evidence = noise_note(samples, analysis)
        if analysis.signals:
            best = analysis.signals[0]
            evidence.append(f"strongest candidate ({best.kind}) at {best.strength:.2f}x threshold")
        return null_hypothesis(
            "word, phrase and tone statistics",
            "two samples of the base model differ from each other",
            evidence,
            calls=samples.ledger.all_ids(),
        )
    return compose(strong, extra_evidence=noise_note(samples, analysis))


def blackbox_plan(view: View) -> Plan:
    """The blackbox investigation (see the module docstring)."""
    samples = Samples()
    yield from survey(samples)
    return hypothesis(samples, find_signals(samples))
