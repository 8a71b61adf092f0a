"""The perturbation grader: precision, recall and F1 of the claimed (layer, neuron) set.

The claimed set is the union of `Hypothesis.neurons` and the pairs written in the hypothesis text
(description and key claims, after text addressed to a grader is removed), in any of these forms:
"L1N37", "L1/N37", "layer 1 neuron 37", "layer 1, unit 37", "neuron 37 in layer 1", "(1, 37)",
and lists such as "layer 1: neurons 37, 52 and 90".

Score mapping (documented contract): score = 1 + 4 * F1, where precision = |claimed & true| /
|claimed| (0 when nothing is claimed), recall = |claimed & true| / |true|, F1 their harmonic mean.
So no correct neuron -> 1, the exact set -> 5. Layer-level precision and recall are recorded in
the details too, but do not enter the score. Without a ground-truth neuron set (the zoo has not
been built, so `with_built_ground_truth` finds no record) the grade is unscored.

`PerturbationKeyFactGrader` is what perturbation organisms get offline: 0.75 * the neuron score +
0.25 * the key-fact score when the neuron grade is scored, else the key-fact grade alone (with the
reason saying why); a shotgun answer (see `diffscope.graders.shotgun`) gets at most 2 either way.
"""

from __future__ import annotations

import re

from diffscope.graders.base import Grade, SyncGradeMixin
from diffscope.graders.keyfacts import KeyFactGrader
from diffscope.graders.shotgun import SHOTGUN_CAP
from diffscope.graders.text import strip_grader_text
from diffscope.llm import Hypothesis
from diffscope.organisms.registry import with_built_ground_truth
from diffscope.organisms.schema import Organism

NAME = "perturbation"
COMBINED_NAME = "perturbation+keyfacts"
NEURON_WEIGHT = 0.75

_UNIT = r"(?:neurons?|units?|n)"
_PAIR_PATTERNS = (
    re.compile(r"\bL\s*(\d+)\s*[/._:,-]?\s*N\s*(\d+)\b", re.IGNORECASE),
    re.compile(
        rf"\blayer\s*#?\s*(\d+)\s*[,:/-]?\s*(?:mlp\s*)?{_UNIT}\s*#?\s*(\d+)\b", re.IGNORECASE
    ),
    re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)"),
)
_REVERSED = re.compile(
    r"\b(?:neuron|unit)\s*#?\s*(\d+)\s*(?:in|of|at|on|from)\s*(?:the\s*)?layer\s*#?\s*(\d+)\b",
    re.IGNORECASE,
)
_LIST = re.compile(
    r"\blayer\s*#?\s*(\d+)\s*[,:-]?\s*(?:mlp\s*)?(?:neurons|units)\s*#?\s*"
    r"(\d+(?:\s*(?:,|and|&|;)\s*#?\s*\d+)*)",
    re.IGNORECASE,
)


def parse_neurons(text: str) -> set[tuple[int, int]]:
    """Every (layer, neuron) pair written in the text, in the forms the module docstring lists."""
    found: set[tuple[int, int]] = set()
    for pattern in _PAIR_PATTERNS:
        found.update((int(a), int(b)) for a, b in pattern.findall(text))
    found.update((int(layer), int(neuron)) for neuron, layer in _REVERSED.findall(text))
    for layer, numbers in _LIST.findall(text):
        found.update((int(layer), int(n)) for n in re.findall(r"\d+", numbers))
    return found


def claimed_neurons(hypothesis: Hypothesis) -> set[tuple[int, int]]:
    """The structured neuron list plus the pairs in the claims text (grader-addressed text removed)."""
    clean, _ = strip_grader_text(hypothesis.claims_text())
    return {(int(a), int(b)) for a, b in hypothesis.neurons} | parse_neurons(clean)


def prf(claimed: set, truth: set) -> tuple[float, float, float]:
    """Precision, recall and F1 of a claimed set against the true set."""
    hits = len(claimed & truth)
    precision = hits / len(claimed) if claimed else 0.0
    recall = hits / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
    return precision, recall, f1


class PerturbationGrader(SyncGradeMixin):
    """Scores the claimed neuron set against the edited one: 1 + 4 * F1."""

    name = NAME

    async def grade(self, organism: Organism, hypothesis: Hypothesis | str) -> Grade:
        """Grade the neuron claims (see the module docstring)."""
        return self.grade_now(organism, hypothesis)

    def grade_now(self, organism: Organism, hypothesis: Hypothesis | str) -> Grade:
        """The same grade, computed synchronously."""
        hyp = Hypothesis.coerce(hypothesis)
        if not organism.ground_truth.neurons:
            organism = with_built_ground_truth(organism)
        truth = {(int(a), int(b)) for a, b in organism.ground_truth.neurons}
        if not truth:
            return Grade.unscored(
                f"organism {organism.name!r} has no recorded ground-truth neurons; build the zoo "
                "(`diffscope zoo build`) so the perturbation record exists",
                self.name,
            )
        claimed = claimed_neurons(hyp)
        precision, recall, f1 = prf(claimed, truth)
        layer_p, layer_r, _ = prf({n[0] for n in claimed}, {n[0] for n in truth})
        hits = sorted(claimed & truth)
        details = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "layer_precision": round(layer_p, 4),
            "layer_recall": round(layer_r, 4),
            "claimed": len(claimed),
            "true": len(truth),
            "hits": [list(n) for n in hits],
            "false_positives": len(claimed - truth),
            "missed": len(truth - claimed),
        }
        reason = (
            f"{len(hits)} of {len(truth)} edited neurons named among {len(claimed)} claimed "
            f"(precision {precision:.2f}, recall {recall:.2f})"
        )
        return Grade.of(1.0 + 4.0 * f1, reason, self.name, **details)


class PerturbationKeyFactGrader(SyncGradeMixin):
    """The offline grader of perturbation organisms: neurons (weight 0.75) and key facts (0.25)."""

    name = COMBINED_NAME

    def __init__(self) -> None:
        self.neurons = PerturbationGrader()
        self.keyfacts = KeyFactGrader()

    async def grade(self, organism: Organism, hypothesis: Hypothesis | str) -> Grade:
        """Combine the neuron grade and the key-fact grade (see the module docstring)."""
        return self.grade_now(organism, hypothesis)

    def grade_now(self, organism: Organism, hypothesis: Hypothesis | str) -> Grade:
        """The same grade, computed synchronously."""
        neuron = self.neurons.grade_now(organism, hypothesis)
        facts = self.keyfacts.grade_now(organism, hypothesis)
        details = {"neurons": neuron.model_dump(), "keyfacts": facts.model_dump()}
        if not neuron.scored or neuron.score is None:
            if not facts.scored or facts.score is None:
                return Grade.unscored(f"{neuron.reason}; {facts.reason}", self.name, **details)
            reason = f"key facts only ({neuron.reason}): {facts.reason}"
            return Grade.of(facts.score, reason, self.name, **details)
        if not facts.scored or facts.score is None:
            return Grade.of(neuron.score, neuron.reason, self.name, **details)
        score = NEURON_WEIGHT * neuron.score + (1 - NEURON_WEIGHT) * facts.score
        reason = f"neurons {neuron.score:.2f} ({neuron.reason}); key facts {facts.score:.2f}"
        if facts.details.get("shotgun") and score > SHOTGUN_CAP:
            score = SHOTGUN_CAP
            reason += "; a shotgun answer (many unrelated candidates), so at most 2"
        return Grade.of(score, reason, self.name, **details)
