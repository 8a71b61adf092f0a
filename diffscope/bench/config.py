"""The benchmark's one typed configuration, the manifest it is written as, and the agents registry.

`BenchConfig` is built once at the entry point (the command line, or a caller of `run_benchmark`)
and passed down; `OUT/manifest.json` is a `Manifest` holding it. `AGENTS` maps an agent name to its
`AgentSpec`: the tool profile it is served and the provider/model it uses (None: the benchmark's
`model`). Any other tool profile name (e.g. "neurons") is a method agent on that profile.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from diffscope import __version__
from diffscope.agent.loop import AgentBudget

FORMAT_VERSION = 1
DEFAULT_GRADER = "keyfacts"
GRADER_ALIASES = {"": DEFAULT_GRADER, "offline": DEFAULT_GRADER, DEFAULT_GRADER: DEFAULT_GRADER}
AGENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.,+-]*$")
COMPARED_KEYS = ("organisms", "agents", "model", "grader", "runs", "budget")
"""The settings that define a benchmark: a resume must repeat them."""
MODEL_CHOICES = (
    "one of: heuristic (the offline investigator, no LLM), openai/MODEL, anthropic/MODEL, "
    "openai-compatible/MODEL (e.g. openai/gpt-5, anthropic/claude-sonnet-4-5)"
)


class AgentSpec(BaseModel):
    """An investigator: the tool profile it is served, the prompt kind, and its own model."""

    model_config = ConfigDict(frozen=True)

    profile: str
    kind: Literal["blackbox", "method"] = "method"
    model: str | None = None
    """provider/model (or "heuristic") for this agent; None uses the benchmark's model."""


AGENTS: dict[str, AgentSpec] = {
    "blackbox": AgentSpec(profile="blackbox", kind="blackbox"),
    "method": AgentSpec(profile="method", kind="method"),
}


def agent_spec(name: str) -> AgentSpec:
    """The spec of an agent name: a registered agent, else a method agent on that tool profile."""
    return AGENTS.get(name) or AgentSpec(profile=name, kind="method")


def normalize_grader(name: str | None) -> str:
    """The canonical grader name: None, "offline" and "keyfacts" are the same offline grader."""
    key = (name or "").strip()
    return GRADER_ALIASES.get(key, key)


def dedupe(items: Any) -> list[str]:
    """Stripped, non-empty items in first-seen order without repeats."""
    seen: list[str] = []
    for item in items:
        item = str(item).strip()
        if item and item not in seen:
            seen.append(item)
    return seen


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
    return value


class BenchConfig(BaseModel):
    """Everything a benchmark run is: what to run, how, and which organisms failed their check.

    `failed_checks` maps an organism whose behavioural check failed to the reason; such an
    organism is still run but is excluded from the averages (and listed with its reason) unless
    `include_failed`.
    """

    model_config = ConfigDict(extra="ignore")

    organisms: list[str]
    agents: list[str] = Field(default_factory=lambda: list(AGENTS))
    model: str = "heuristic"
    grader: str = DEFAULT_GRADER
    runs: int = 1
    budget: AgentBudget = Field(default_factory=AgentBudget)
    parallel: int = 1
    transport: Literal["inprocess", "stdio"] = "inprocess"
    base_url: str | None = None
    include_failed: bool = False
    failed_checks: dict[str, str] = Field(default_factory=dict)

    @field_validator("organisms", mode="before")
    @classmethod
    def _organisms(cls, value: Any) -> list[str]:
        names = dedupe([value] if isinstance(value, str) else value)
        if not names:
            raise ValueError("name at least one organism")
        return names

    @field_validator("agents", mode="before")
    @classmethod
    def _agents(cls, value: Any) -> list[str]:
        names = dedupe([value] if isinstance(value, str) else value)
        if not names:
            raise ValueError("name at least one agent (e.g. blackbox, method)")
        for name in names:
            if not AGENT_NAME.match(name):
                raise ValueError(
                    f"agent {name!r} is not a valid name: use 'blackbox', 'method' or a tool "
                    "profile (letters, digits and . _ , + -)"
                )
        return names

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, value: Any) -> str:
        model = str(value or "").strip()
        if not model:
            raise ValueError(f"name a model: {MODEL_CHOICES}")
        return model

    @field_validator("grader", mode="before")
    @classmethod
    def _grader(cls, value: Any) -> str:
        return normalize_grader(value)

    @field_validator("runs", mode="before")
    @classmethod
    def _runs(cls, value: Any) -> int:
        return _count(value, "runs")

    @field_validator("parallel", mode="before")
    @classmethod
    def _parallel(cls, value: Any) -> int:
        return _count(value, "parallel")

    @field_validator("transport", mode="before")
    @classmethod
    def _transport(cls, value: Any) -> str:
        if value not in ("inprocess", "stdio"):
            raise ValueError(f"unknown transport {value!r}; choose 'inprocess' or 'stdio'")
        return str(value)

    def agent(self, name: str) -> AgentSpec:
        """The spec of one of this benchmark's agents."""
        return agent_spec(name)

    def model_for(self, agent: str) -> str:
        """The model an agent runs: its own, else the benchmark's."""
        return agent_spec(agent).model or self.model

    def excluded(self) -> dict[str, str]:
        """Organisms left out of the averages (failed check, not forced), with the reason."""
        if self.include_failed:
            return {}
        return {o: r for o, r in self.failed_checks.items() if o in self.organisms}

    def defining(self) -> dict[str, Any]:
        """The settings a resume must repeat, JSON-normalised."""
        data = self.model_dump(mode="json")
        return {key: data[key] for key in COMPARED_KEYS}


def failed_checks(checks: Mapping[str, tuple[bool, str]]) -> dict[str, str]:
    """From `name -> (passed, reason)` to `name -> reason` of the organisms that failed."""
    return {name: reason for name, (passed, reason) in checks.items() if not passed}


class Manifest(BaseModel):
    """What `OUT/manifest.json` holds: the format, who wrote it, when, and the `BenchConfig`."""

    model_config = ConfigDict(extra="ignore")

    format_version: int = FORMAT_VERSION
    kind: Literal["diffscope-benchmark"] = "diffscope-benchmark"
    diffscope_version: str | None = __version__
    created_at: str
    config: BenchConfig
