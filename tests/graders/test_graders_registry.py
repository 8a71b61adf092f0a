"""Choosing graders by name; the Grade model; the Hypothesis model."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from diffscope.graders import (
    Grade,
    Grader,
    KeyFactGrader,
    OfflineGrader,
    PerturbationGrader,
    PerturbationKeyFactGrader,
    RubricGrader,
    get_grader,
    grade_sync,
)
from diffscope.llm import Hypothesis, ProviderError
from diffscope.organisms.registry import get_organism


def test_offline_names() -> None:
    sea = get_organism("sea_topic")
    flip = get_organism("perturb_flip_k5")
    assert isinstance(get_grader(None, sea), KeyFactGrader)
    assert isinstance(get_grader("keyfacts", sea), KeyFactGrader)
    assert isinstance(get_grader(None, flip), PerturbationKeyFactGrader)
    assert isinstance(get_grader("perturbation"), PerturbationGrader)
    auto = get_grader()
    assert isinstance(auto, OfflineGrader) and isinstance(auto, Grader)
    assert grade_sync(auto, flip, "5 neurons sign-flipped").grader == "perturbation+keyfacts"
    assert asyncio.run(auto.grade(sea, "the sea")).grader == "keyfacts"


def test_provider_names_build_the_rubric_grader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ProviderError, match="OPENAI_API_KEY"):
        get_grader("openai/gpt-5", get_organism("sea_topic"))
    with pytest.raises(ProviderError):
        get_grader("nonsense")
    grader = get_grader("openai/gpt-5", api_key="sk-test", votes=3, aggregate="median")
    assert isinstance(grader, RubricGrader)
    assert (grader.votes, grader.aggregate, grader.name) == (3, "median", "rubric:openai/gpt-5")


def test_grade_model_never_silently_zero() -> None:
    assert Grade.unscored("why", "g").score is None
    assert Grade.of(7, "r", "g").score == 5.0
    assert Grade.of(0.2, "r", "g").score == 1.0
    with pytest.raises(ValidationError):
        Grade(score=None, scored=True, reason="r", grader="g")
    with pytest.raises(ValidationError):
        Grade(score=0.0, scored=True, reason="r", grader="g")


def test_hypothesis_model() -> None:
    hyp = Hypothesis.coerce({"description": "d", "key_claims": ["a", " "], "neurons": [[1, 2]]})
    assert hyp.neurons == [(1, 2)] and hyp.confidence is None
    assert hyp.claims_text() == "d\na"
    assert Hypothesis.coerce("just text").description == "just text"
    with pytest.raises(ValidationError):
        Hypothesis(description="d", confidence=1.5)
