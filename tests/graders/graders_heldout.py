"""Loading and grading the held-out hypothesis sets in data/ (heldout_keyfacts.yaml, and the rule
cases of heldout_rules.yaml: shotgun, synonym, null-statement, injection); run it to print per-type
accuracy: `python tests/graders/graders_heldout.py`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from diffscope.graders import get_grader
from diffscope.llm import Hypothesis
from diffscope.organisms.registry import get_organism
from diffscope.organisms.schema import Organism

DATA = Path(__file__).parent / "data" / "heldout_keyfacts.yaml"
RULES = Path(__file__).parent / "data" / "heldout_rules.yaml"


@dataclass
class Result:
    """One graded held-out case."""

    type: str
    kind: str
    text: str
    score: float | None
    low: float
    high: float
    fresh: bool = False

    @property
    def ok(self) -> bool:
        return self.score is not None and self.low <= self.score <= self.high


@cache
def _organism(name: str) -> Organism:
    return get_organism(name)


def organism_for(section: dict[str, Any], case: dict[str, Any]) -> Organism:
    org = _organism(case.get("organism", section["organism"]))
    if "truth_neurons" in section:
        truth = org.ground_truth.model_copy(
            update={"neurons": [tuple(n) for n in section["truth_neurons"]]}
        )
        org = org.model_copy(update={"ground_truth": truth})
    return org


def hypothesis_for(case: dict[str, Any]) -> Hypothesis:
    neurons = [tuple(n) for n in case.get("neurons", [])]
    if "neurons_grid" in case:
        layers, count = case["neurons_grid"]
        neurons = [(layer, n) for layer in range(layers) for n in range(count)]
    return Hypothesis(description=case["text"], neurons=neurons, claims=case.get("claims", []))


def grade_heldout(files: tuple[Path, ...] = (DATA,)) -> list[Result]:
    results = []
    sections = [
        (rtype, section)
        for path in files
        for rtype, section in yaml.safe_load(path.read_text()).items()
    ]
    for rtype, section in sections:
        for case in section["cases"]:
            org = organism_for(section, case)
            grade = get_grader(None, org).grade_sync(org, hypothesis_for(case))
            low, high = case["expect"]
            results.append(
                Result(
                    rtype,
                    case["kind"],
                    case["text"],
                    grade.score,
                    low,
                    high,
                    case.get("fresh", False),
                )
            )
    return results


def accuracy_by_type(results: list[Result]) -> dict[str, tuple[int, int]]:
    table: dict[str, tuple[int, int]] = {}
    for r in results:
        ok, total = table.get(r.type, (0, 0))
        table[r.type] = (ok + r.ok, total + 1)
    return table


if __name__ == "__main__":
    found = grade_heldout((DATA, RULES))
    for r in found:
        if not r.ok:
            print(f"MISS {r.type:20} {r.kind:9} {r.score} not in [{r.low}, {r.high}]: {r.text!r}")
    fresh = accuracy_by_type([r for r in found if r.fresh])
    for rtype, (ok, total) in accuracy_by_type(found).items():
        print(f"{rtype:20} {ok}/{total}   fresh {fresh[rtype][0]}/{fresh[rtype][1]}")
