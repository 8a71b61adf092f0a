"""Turning signals into a hypothesis: the strongest signals that clear their thresholds make the
description, their claims and evidence are kept, and the confidence follows the strongest one.
When nothing clears its threshold the hypothesis says that no narrow change was found.

Every key claim is also given as a cited claim (`claims`): its text with the run-log ids of the tool
calls whose outputs produced the signal it comes from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from diffscope.agent.heuristic.behaviour import Signal, confidence

MAX_SIGNALS = 4
MAX_CLAIMS = 12
MAX_EVIDENCE = 16

NULL_DESCRIPTION = (
    "No narrow change found: the models behave identically within sampling noise. The "
    "fine-tune's outputs are statistically indistinguishable from the base model's: {what} "
    "differ no more than {reference}. Any differences are small and diffuse, at the level of "
    "noise, as after general continued training."
)


def null_hypothesis(
    what: str,
    reference: str,
    evidence: Sequence[str],
    *,
    conf: float = 0.6,
    calls: Sequence[str] = (),
) -> dict[str, Any]:
    """The answer when nothing clears the noise floor; its claims cite `calls` (every call read)."""
    claims = [
        "No narrow change was found",
        "Differences from the base model are small and diffuse (noise level)",
    ]
    return {
        "description": NULL_DESCRIPTION.format(what=what, reference=reference),
        "key_claims": claims,
        "claims": [{"text": c, "calls": list(calls)} for c in claims],
        "confidence": conf,
        "evidence": list(evidence)[:MAX_EVIDENCE],
    }


def sentence(text: str) -> str:
    """`text` with a capital first letter and a final full stop."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def compose(
    signals: Sequence[Signal],
    *,
    extra_claims: Sequence[str] = (),
    extra_evidence: Sequence[str] = (),
    neurons: Sequence[tuple[int, int]] = (),
    conf: float | None = None,
) -> dict[str, Any]:
    """A hypothesis from signals that cleared their thresholds, strongest first."""
    chosen = list(signals)[:MAX_SIGNALS]
    parts = [sentence(s.summary) for s in chosen]
    if len(parts) > 1:
        parts = [parts[0], *(sentence("Also, " + s.summary) for s in chosen[1:])]
    claims: list[str] = []
    cited: dict[str, list[str]] = {}
    evidence: list[str] = []
    for s in chosen:
        for c in s.claims:
            if c not in claims:
                claims.append(c)
            cited.setdefault(c, [])
            cited[c].extend(i for i in s.calls if i not in cited[c])
        evidence.extend(e for e in s.evidence if e not in evidence)
    claims.extend(c for c in extra_claims if c not in claims)
    evidence.extend(e for e in extra_evidence if e not in evidence)
    found: dict[str, Any] = {
        "description": " ".join(parts),
        "key_claims": claims[:MAX_CLAIMS],
        "claims": [{"text": c, "calls": cited.get(c, [])} for c in claims[:MAX_CLAIMS]],
        "confidence": conf if conf is not None else confidence(chosen[0].strength),
        "evidence": evidence[:MAX_EVIDENCE],
    }
    if neurons:
        found["neurons"] = [[int(layer), int(n)] for layer, n in neurons]
    return found
