"""Hostile arguments through a real client: random, wrong-typed and out-of-range argument sets for
every tool never crash the server, every failure is an isError result with a message (never an
internal error), and the server still answers afterwards."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from toolsupport import DEFAULT_ARGS, live_client, text_of

from diffscope.server import create_server
from diffscope.tools import TOOLS, ToolContext, load_tool_modules

load_tool_modules()

EXAMPLES = 520
HUGE = "word " * 20_000  # 100 KB
TEXTS = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
    st.sampled_from(
        ["", " ", "\x00", "\n\n", "🙂" * 50, "NaN", HUGE, "x" * 9000, "Once upon a time"]
    ),
)
NUMBERS = st.one_of(
    st.integers(min_value=-10, max_value=300),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, 255, 256, 1024, 10**9, -1, 0.5, 1e308]),
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


def arguments(tool: str) -> st.SearchStrategy[dict[str, Any]]:
    """Argument sets for `tool`: its own names with near-valid or absurd values, plus stray keys."""
    names = [param.name for param in TOOLS[tool].params]
    value = {name: st.one_of(NEAR_VALID.get(name, NUMBERS), ANYTHING) for name in names}
    own = st.fixed_dictionaries({}, optional=value)
    stray = st.dictionaries(st.text(min_size=1, max_size=10), ANYTHING, max_size=2)
    return st.one_of(own, own, own, st.builds(lambda a, b: {**a, **b}, own, stray))


CALLS = st.sampled_from(sorted(TOOLS)).flatmap(
    lambda tool: st.tuples(st.just(tool), arguments(tool))
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


def test_hostile_arguments_never_crash_the_server(tool_context):
    ctx = ToolContext(pair=tool_context.pair)
    outcomes = {"ok": 0, "error": 0}
    with live_client(create_server(ctx, "method")) as client:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(call=CALLS, raw_nan=st.booleans())
        def check(call: tuple[str, dict[str, Any]], raw_nan: bool) -> None:
            tool, args = call
            sent = args if raw_nan else json_safe(args)
            result = client.call(tool, sent)  # a raw NaN reaches the server as null
            message = text_of(result)
            if result.is_error:
                outcomes["error"] += 1
                assert message.strip(), (tool, args)
                assert "internal error" not in message, (tool, sent, message)
            else:
                outcomes["ok"] += 1
                assert isinstance(result.structured_content, dict), (tool, args)

        check()
        after = client.call("query_models", DEFAULT_ARGS["query_models"])
    assert not after.is_error, text_of(after)
    assert outcomes["error"] > 0 and outcomes["ok"] > 0, outcomes
