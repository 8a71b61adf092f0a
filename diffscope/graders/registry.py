"""Choosing a grader by name: the offline graders by name, any `provider/model` for the rubric grader.

get_grader(None, organism)          offline: key facts; perturbation organisms get the neuron
get_grader("keyfacts", organism)    grader combined with key facts
get_grader("perturbation")          the neuron grader alone
get_grader("openai/gpt-5", votes=3) the rubric grader over that provider
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from diffscope.graders.base import Grade, Grader, SyncGradeMixin
from diffscope.graders.keyfacts import KeyFactGrader
from diffscope.graders.perturbation import PerturbationGrader, PerturbationKeyFactGrader
from diffscope.graders.rubric import RubricGrader
from diffscope.llm import Hypothesis, get_provider
from diffscope.organisms.schema import Organism


def is_perturbation(organism: Organism) -> bool:
    """Whether the organism's ground truth is a set of edited neurons."""
    return organism.kind == "perturbation" or organism.type == "neuron_perturbation"


class OfflineGrader(SyncGradeMixin):
    """Picks the offline grader per organism: neurons + key facts for perturbations, else key facts."""

    name = "offline"

    def __init__(self) -> None:
        self.keyfacts = KeyFactGrader()
        self.perturbation = PerturbationKeyFactGrader()

    async def grade(self, organism: Organism, hypothesis: Hypothesis | str) -> Grade:
        """Grade with the offline grader that fits the organism."""
        grader = self.perturbation if is_perturbation(organism) else self.keyfacts
        return await grader.grade(organism, hypothesis)


GRADERS: dict[str, Callable[[], Grader]] = {
    "keyfacts": OfflineGrader,
    "offline": OfflineGrader,
    "keyfacts-only": KeyFactGrader,
    "perturbation": PerturbationGrader,
    "perturbation+keyfacts": PerturbationKeyFactGrader,
}


def get_grader(name: str | None = None, organism: Organism | None = None, **kw: Any) -> Grader:
    """The grader for a name; `organism`, when given, picks the offline grader that fits it.

    None, "keyfacts" or "offline": the key-fact grader, or for perturbation organisms the neuron
    grader combined with key facts. Other names in `GRADERS` build that grader. Anything else is a
    `provider/model` name: the rubric grader over `get_provider(name)`; `votes`, `aggregate`,
    `temperature` and `max_tokens` go to the rubric grader, other keywords to `get_provider`
    (which raises `ProviderError` early for a bad name or a missing key).
    """
    key = (name or "keyfacts").strip()
    if key in ("keyfacts", "offline") and organism is not None:
        return PerturbationKeyFactGrader() if is_perturbation(organism) else KeyFactGrader()
    if key in GRADERS:
        return GRADERS[key]()
    options = {k: kw.pop(k) for k in ("votes", "aggregate", "temperature", "max_tokens") if k in kw}
    return RubricGrader(get_provider(key, **kw), **options)
