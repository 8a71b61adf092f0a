"""The hypothesis: the structured answer an investigator submits about what a fine-tune changed.

Graders read `description`, `key_claims` and the text of each cited claim in `claims`; `evidence` is
kept for the run log and is never matched against key facts, since tool output quoted there is not a
claim. `claims` are key claims with the ids of the tool calls (as the run log records them) whose
output supports each one, so a benchmark can tell which tools' outputs ended up in credited claims;
it is optional, so hypotheses written before it existed still load. `neurons` holds the
(layer, neuron) pairs an investigator names for perturbation organisms.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Claim(BaseModel):
    """One key claim and the tool call ids (from the run log) whose output supports it."""

    model_config = ConfigDict(extra="forbid")

    text: str
    calls: list[str] = Field(default_factory=list)

    @field_validator("calls", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) else v for v in value]
        return value


class Hypothesis(BaseModel):
    """What an investigator believes the fine-tune changed."""

    model_config = ConfigDict(extra="forbid")

    description: str
    key_claims: list[str] = Field(default_factory=list)
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    evidence: list[str] = Field(default_factory=list)
    claims: list[Claim] = Field(default_factory=list)
    neurons: list[tuple[int, int]] = Field(default_factory=list)

    @field_validator("neurons", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [tuple(v) if isinstance(v, list) else v for v in value]
        return value

    @field_validator("claims", mode="before")
    @classmethod
    def _claims(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"text": v} if isinstance(v, str) else v for v in value]
        return value

    def all_claims(self) -> list[str]:
        """Every key claim once: `key_claims`, then the texts of `claims` not already among them."""
        found: list[str] = []
        for text in [*self.key_claims, *(c.text for c in self.claims)]:
            text = text.strip()
            if text and text not in found:
                found.append(text)
        return found

    def claims_text(self) -> str:
        """The text graders match: the description followed by each key claim on its own line."""
        parts = [self.description.strip(), *self.all_claims()]
        return "\n".join(p for p in parts if p)

    def cited_calls(self) -> list[str]:
        """Every tool call id some claim cites, in first-cited order."""
        return list(dict.fromkeys(i for c in self.claims for i in c.calls))

    @classmethod
    def coerce(cls, value: Hypothesis | str | dict[str, Any]) -> Hypothesis:
        """A hypothesis from itself, a bare description string or a mapping of its fields."""
        if isinstance(value, Hypothesis):
            return value
        if isinstance(value, str):
            return cls(description=value)
        return cls.model_validate(value)
