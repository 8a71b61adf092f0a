"""Graders: score an investigator's hypothesis against an organism's ground truth on 1-5.

`KeyFactGrader` (offline, deterministic phrase matching), `PerturbationGrader` (precision and
recall of claimed neurons), `RubricGrader` (an LLM over any provider, last `SCORE:` line, N-vote);
`get_grader(name, organism)` picks one. A grade that cannot be given is unscored, never a zero.
"""

from diffscope.graders.base import Grade, Grader, grade_sync
from diffscope.graders.keyfacts import KeyFactGrader
from diffscope.graders.perturbation import (
    PerturbationGrader,
    PerturbationKeyFactGrader,
    parse_neurons,
)
from diffscope.graders.registry import GRADERS, OfflineGrader, get_grader
from diffscope.graders.rubric import RUBRICS, RubricGrader, build_prompt, parse_score

__all__ = [
    "GRADERS",
    "RUBRICS",
    "Grade",
    "Grader",
    "KeyFactGrader",
    "OfflineGrader",
    "PerturbationGrader",
    "PerturbationKeyFactGrader",
    "RubricGrader",
    "build_prompt",
    "get_grader",
    "grade_sync",
    "parse_neurons",
    "parse_score",
]
