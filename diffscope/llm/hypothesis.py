"""The hypothesis: the structured answer an investigator submits about what a fine-tune changed.

Graders read `description` and `key_claims` (the claims); `evidence` is kept for the run log and is
never matched against key facts, since tool output quoted there is not a claim. `neurons` holds the
(layer, neuron) pairs an investigator names for perturbation organisms.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Hypothesis(BaseModel):
    """What an investigator believes the fine-tune changed."""

    model_config = ConfigDict(extra="forbid")

    description: str
    key_claims: list[str] = Field(default_factory=list)
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    evidence: list[str] = Field(default_factory=list)
    neurons: list[tuple[int, int]] = Field(default_factory=list)

    @field_validator("neurons", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [tuple(v) if isinstance(v, list) else v for v in value]
        return value

    def claims_text(self) -> str:
        """The text graders match: the description followed by each key claim on its own line."""
        parts = [self.description.strip(), *(c.strip() for c in self.key_claims)]
        return "\n".join(p for p in parts if p)

    @classmethod
    def coerce(cls, value: Hypothesis | str | dict[str, Any]) -> Hypothesis:
        """A hypothesis from itself, a bare description string or a mapping of its fields."""
        if isinstance(value, Hypothesis):
            return value
        if isinstance(value, str):
            return cls(description=value)
        return cls.model_validate(value)
