"""The grade a grader returns and the `Grader` protocol every grader follows.

A grade is on a 1-5 scale. A grader that cannot score (an unparseable LLM reply, no ground-truth
neurons to compare against) returns `scored=False, score=None` with the reason: never a silent zero.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field, model_validator

from diffscope.llm import Hypothesis
from diffscope.organisms.schema import Organism

MIN_SCORE = 1.0
MAX_SCORE = 5.0


class Grade(BaseModel):
    """A grader's verdict on one hypothesis: a 1-5 score, or unscored with the reason why."""

    score: float | None
    scored: bool
    reason: str
    grader: str
    details: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Grade:
        if self.scored != (self.score is not None):
            raise ValueError("a grade is scored exactly when it has a score")
        if self.score is not None and not MIN_SCORE <= self.score <= MAX_SCORE:
            raise ValueError(f"score {self.score} is outside {MIN_SCORE:g}-{MAX_SCORE:g}")
        return self

    @classmethod
    def of(cls, score: float, reason: str, grader: str, **details: Any) -> Grade:
        """A scored grade, rounded to two decimals and clamped to the 1-5 scale."""
        value = round(min(MAX_SCORE, max(MIN_SCORE, float(score))), 2)
        return cls(score=value, scored=True, reason=reason, grader=grader, details=details)

    @classmethod
    def unscored(cls, reason: str, grader: str, **details: Any) -> Grade:
        """A grade that could not be given, with the reason kept."""
        return cls(score=None, scored=False, reason=reason, grader=grader, details=details)


@runtime_checkable
class Grader(Protocol):
    """Scores a hypothesis against an organism's ground truth."""

    name: str

    async def grade(self, organism: Organism, hypothesis: Hypothesis | str) -> Grade:
        """Grade one hypothesis; a failure to score is an unscored `Grade`, not an exception."""
        ...


class SyncGradeMixin:
    """Adds `grade_sync` to a grader with an async `grade`."""

    def grade_sync(self, organism: Organism, hypothesis: Hypothesis | str) -> Grade:
        """Run `grade` to completion from synchronous code (not from inside an event loop)."""
        return grade_sync(self, organism, hypothesis)  # type: ignore[arg-type]


def grade_sync(grader: Grader, organism: Organism, hypothesis: Hypothesis | str) -> Grade:
    """Grade from synchronous code with any grader."""
    return asyncio.run(grader.grade(organism, hypothesis))
