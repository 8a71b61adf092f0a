"""Hostile inputs shared by the hostile-argument tests and the fuzz suite (tests/server/test_fuzz*,
benchmarks/fuzz_server.py): hypothesis strategies for every tool's arguments, unknown tool names,
and the checks every answer must pass (an error is short and never an internal error; nothing
reveals the organism)."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import strategies as st

from diffscope.tools import TOOLS, load_tool_modules

load_tool_modules()

HUGE = "word " * 20_000  # 100 KB
MAX_ERROR_CHARS = 2_000  # an error message longer than this repeats the caller's input
TEXTS = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(
        ["", " ", "\x00", "\n\n", "🙂" * 50, "NaN", HUGE, "x" * 9000, "Once upon a time"]
    ),
    st.sampled_from(["5", "1", "0", "true", "false", "0.5", "1e-38", "[1, 2]"]),  # typed as text
)
NUMBERS = st.one_of(
    st.integers(min_value=-10, max_value=300),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, 255, 256, 1024, 10**9, -1, 0.5, 1e308, 5.0, True, False]),
    st.sampled_from([1e-38, 5e-324, 1e-300, 1e-10, 1e-5, 2.0000001]),  # tiny temperatures
)
ANYTHING = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, TEXTS),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
NEAR_VALID: dict[str, st.SearchStrategy[Any]] = {
    "prompts": st.one_of(st.lists(TEXTS, max_size=20), TEXTS, st.none()),
    "layers": st.one_of(st.lists(NUMBERS, max_size=6), st.none()),
    "model": st.sampled_from(["base", "finetuned", "both", "BASE", "", None]),
    "kind": st.sampled_from(["neuron", "mean_diff", "latent", "custom"]),
    "metric": st.sampled_from(["rms", "mean", "tail", "decorrelation", "output", "max"]),
    "mode": st.sampled_from(["total", "intrinsic", "both"]),
    "order_by": st.sampled_from(["occurrence", "mass_shift", "frac_positive", "mean_diff", "name"]),
}
STRAY_NAMES = st.one_of(
    st.text(min_size=1, max_size=10),
    st.sampled_from(["x" * 10_000, "mcp_context", "__class__", "ctx"]),
)


def arguments(tool: str) -> st.SearchStrategy[dict[str, Any]]:
    """Argument sets for `tool`: its own names with near-valid or absurd values, plus stray keys
    (sometimes hundreds of them)."""
    names = [param.name for param in TOOLS[tool].params]
    value = {name: st.one_of(NEAR_VALID.get(name, NUMBERS), ANYTHING) for name in names}
    own = st.fixed_dictionaries({}, optional=value)
    stray = st.dictionaries(STRAY_NAMES, ANYTHING, max_size=2)
    many = st.integers(min_value=50, max_value=250).map(
        lambda n: {f"unknown_{i:03d}": i for i in range(n)}
    )
    return st.one_of(own, own, own, st.builds(lambda a, b: {**a, **b}, own, stray), many)


CALLS = st.sampled_from(sorted(TOOLS)).flatmap(
    lambda tool: st.tuples(st.just(tool), arguments(tool))
)
UNKNOWN_TOOLS = st.one_of(
    st.text(max_size=30).filter(lambda name: name not in TOOLS),
    st.sampled_from(["x" * 10_000, "query_models ", "QUERY_MODELS", "../etc/passwd", "\x00"]),
)


def json_safe(value: Any) -> Any:
    """NaN and infinities as the strings a client might send instead of the raw float."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value


def squash(text: str) -> str:
    """Lower case with whitespace collapsed (how the leak scans compare)."""
    return " ".join(text.split()).lower()


def needles(org: Any) -> dict[str, str]:
    """What must never show for an organism: its ground-truth description, each key fact's
    sentence, its name and its zoo recipe name (squashed; see test_ground_truth_isolation)."""
    truth = org.ground_truth
    found = {"description": squash(truth.description), "organism name": org.name.lower()}
    found.update({f"key fact {i}": squash(f.fact) for i, f in enumerate(truth.key_facts)})
    if org.zoo is not None:
        found["zoo recipe"] = org.zoo.recipe.lower()
    return found


def problems(message: str, is_error: bool, structured: Any) -> list[str]:
    """What is wrong with one tool answer: an error must be short, non-empty and not internal;
    a success must carry a structured result."""
    found = []
    if is_error:
        if not message.strip():
            found.append("empty error")
        if "internal error" in message:
            found.append("internal error")
        if len(message) > MAX_ERROR_CHARS:
            found.append(f"error of {len(message)} chars")
    elif not isinstance(structured, dict):
        found.append("success without structured content")
    return found


def leaked(text: str, needles: dict[str, str]) -> list[str]:
    """The needles (what must stay hidden, squashed) that `text` shows."""
    seen = squash(text)
    return [what for what, needle in needles.items() if needle and needle in seen]


def shown(result: Any) -> str:
    """All text a caller sees in a tool result (text blocks and structured content)."""
    texts = [block.text for block in result.content if getattr(block, "type", "") == "text"]
    structured = json.dumps(result.structured_content) if result.structured_content else ""
    return "\n".join(texts) + "\n" + structured
