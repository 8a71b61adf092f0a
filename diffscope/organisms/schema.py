"""The Organism schema: a base/fine-tune pair whose change is known, loaded from YAML."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

OrganismKind = Literal["toy", "real", "perturbation", "null", "hub", "local"]
"""toy: the toy zoo's trained organisms; real: the real-model (smol) zoo's; perturbation and null:
planted neuron edits and nulls of either zoo; hub and local: a user's pairs."""


class KeyFact(BaseModel):
    """One fact a good hypothesis names; `any_of` lists the words and phrases that count as naming it.

    Each entry of `any_of` is matched as a whole phrase against the hypothesis (case-insensitive, with
    simple word forms); one match is enough. `all_of` groups must each match at least once.
    """

    model_config = ConfigDict(extra="forbid")

    fact: str
    any_of: list[str] = Field(default_factory=list)
    all_of: list[list[str]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"fact": value}
        return value


class GroundTruth(BaseModel):
    """What the fine-tune changed. Only organisms/ and graders/ may read this."""

    model_config = ConfigDict(extra="forbid")

    description: str
    key_facts: list[KeyFact] = Field(default_factory=list)
    neurons: list[tuple[int, int]] = Field(
        default_factory=list, description="(layer, neuron) pairs edited, for perturbation organisms"
    )
    synonyms: list[list[str]] = Field(
        default_factory=list,
        description=(
            "groups of interchangeable words or phrases (e.g. [instead of, rather than]); the "
            "key-fact grader also accepts a key-fact phrase with one word of a group replaced by "
            "another of the same group"
        ),
    )


class ZooRecipe(BaseModel):
    """How the offline toy zoo builds this organism's fine-tune."""

    model_config = ConfigDict(extra="forbid")

    recipe: str
    seed: int = 0
    lora: bool = False
    params: dict[str, Any] = Field(default_factory=dict)


class Organism(BaseModel):
    """A base/fine-tune pair with a known change.

    `base` and `finetuned` are local folders, hub ids, `zoo:NAME` for the offline toy zoo, or
    `smol:NAME` for the real-model zoo (`smol:base` is SmolLM2-135M-Instruct itself).
    `adapter` names a peft adapter applied on `base` instead of full fine-tuned weights.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    kind: OrganismKind
    type: str
    base: str
    finetuned: str | None = None
    adapter: str | None = None
    ground_truth: GroundTruth
    corpus: str | None = None
    chat: bool = False
    zoo: ZooRecipe | None = None
    notes: str = ""

    @field_validator("type")
    @classmethod
    def _type_known(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("type must not be empty")
        return value

    @model_validator(mode="after")
    def _one_finetune(self) -> Organism:
        if (self.finetuned is None) == (self.adapter is None):
            raise ValueError("give exactly one of 'finetuned' (full weights) or 'adapter' (peft)")
        return self

    def public_view(self) -> dict[str, Any]:
        """Everything but the ground truth and notes: what `organisms list/show` print for a user."""
        return self.model_dump(exclude={"ground_truth", "notes"})

    def investigator_view(self) -> dict[str, Any]:
        """What an investigator may know: nothing that names or hints at the change (no name, type,
        kind, model references or zoo recipe), only how to talk to the pair."""
        return {
            "pair": "a base model and its fine-tuned variant",
            "chat": self.chat,
            "corpus": "the synthetic world corpus"
            if self.corpus in (None, "world")
            else "a user-provided corpus",
        }
