"""The investigator's own tools and answers: `record_hypothesis` / `submit_answer` (their schema and
validation), the fallback hypothesis, and `InvestigationResult`, the outcome of one run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from diffscope.agent import prompts
from diffscope.agent.log import RunLog, Status, SubmittedBy
from diffscope.llm import Hypothesis, ToolSpec

RECORD_TOOL = prompts.RECORD_TOOL
SUBMIT_TOOL = prompts.SUBMIT_TOOL


@dataclass
class InvestigationResult:
    """The outcome of one investigation and its full log."""

    hypothesis: Hypothesis
    submitted_by: SubmittedBy
    status: Status
    stop_reason: str | None
    error: str | None
    log: RunLog
    log_path: Path | None = None


def describe_validation_error(tool: str, error: ValidationError) -> str:
    """One readable line: each bad argument, what is wrong, what was given."""
    parts = []
    for item in error.errors(include_url=False):
        loc = ".".join(str(part) for part in item.get("loc", ())) or "arguments"
        shown = repr(item.get("input"))
        if len(shown) > 60:
            shown = shown[:57] + "..."
        got = "" if item.get("type") == "missing" else f" (got {shown})"
        parts.append(f"{loc}: {item.get('msg', 'invalid')}{got}")
    return f"invalid arguments for {tool}: " + "; ".join(parts) + ". Fix them and call again."


HYPOTHESIS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "description": {
            "type": "string",
            "description": "what the fine-tune changed, in a few specific sentences",
        },
        "key_claims": {
            "type": "array",
            "items": {"type": "string"},
            "description": "short, checkable claims the description makes",
        },
        "confidence": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "how sure you are, from 0 to 1",
        },
        "evidence": {
            "type": "array",
            "items": {"type": "string"},
            "description": "the observations that support the hypothesis",
        },
        "claims": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "description": "one short, checkable claim"},
                    "calls": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "the ids of the tool calls whose output supports it",
                    },
                },
                "required": ["text", "calls"],
            },
            "description": (
                "each key claim with the ids of the tool calls (as you received them) whose "
                "output supports it"
            ),
        },
        "neurons": {
            "type": "array",
            "items": {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
            "description": "changed neurons as [layer, neuron] pairs, only if you found them",
        },
    },
    "required": ["description"],
}
HYPOTHESIS_FIELDS = frozenset(HYPOTHESIS_SCHEMA["properties"])

RECORD_SPEC = ToolSpec(
    name=RECORD_TOOL,
    description=(
        "Save your current best hypothesis (kept if the budget runs out); the investigation goes on."
    ),
    parameters=HYPOTHESIS_SCHEMA,
)
SUBMIT_SPEC = ToolSpec(
    name=SUBMIT_TOOL,
    description="Submit your final hypothesis about what the fine-tune changed; this ends the run.",
    parameters=HYPOTHESIS_SCHEMA,
)


def parse_hypothesis(tool: str, arguments: Mapping[str, Any]) -> Hypothesis:
    """Validate the local tools' arguments; ValueError with a message meant for the model."""
    unknown = sorted(set(arguments) - HYPOTHESIS_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown argument(s) for {tool}: {', '.join(unknown)}; "
            f"valid arguments: {', '.join(sorted(HYPOTHESIS_FIELDS))}"
        )
    try:
        return Hypothesis.model_validate(dict(arguments))
    except ValidationError as exc:
        raise ValueError(describe_validation_error(tool, exc)) from exc


def fallback_hypothesis(text: str) -> Hypothesis:
    """A zero-confidence hypothesis from the model's last words (empty when it said nothing)."""
    return Hypothesis(description=text.strip()[:4000], confidence=0.0)


def clip(text: str, limit: int) -> str:
    """Cut a tool result to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... {len(text) - limit} more characters cut]"
