"""Hostile arguments through a real client: random, wrong-typed and out-of-range argument sets for
every tool never crash the server, every failure is a short isError result with a message (never
an internal error), and the server still answers afterwards. Then one test per hole the fuzzing
run of issue #16 found: tiny temperatures, loose integer types, max_new_tokens past the context,
error messages that repeat huge inputs, and load errors that name the organism."""

from __future__ import annotations

from typing import Any

import pytest
from hostile import CALLS, json_safe, problems
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from toolsupport import DEFAULT_ARGS, MAIN_ORGANISM, live_client, text_of

from diffscope.organisms.registry import OrganismError, get_organism, resolve_ref
from diffscope.server import create_server
from diffscope.tools import ToolContext

EXAMPLES = 520
TINY = 1e-38


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
            outcomes["error" if result.is_error else "ok"] += 1
            found = problems(text_of(result), result.is_error, result.structured_content)
            assert not found, (tool, sent, found, text_of(result)[:500])

        check()
        after = client.call("query_models", DEFAULT_ARGS["query_models"])
    assert not after.is_error, text_of(after)
    assert outcomes["error"] > 0 and outcomes["ok"] > 0, outcomes


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("query_models", {"prompts": ["Once upon a time"], "max_new_tokens": 6}),
        ("steer", {"prompts": ["Once upon a time"], "max_new_tokens": 6}),
        ("amplify", {"prompts": ["Once upon a time"], "max_new_tokens": 6, "n_samples": 1}),
    ],
)
@pytest.mark.parametrize("temperature", [TINY, 5e-324])
def test_a_tiny_temperature_samples_like_greedy(method_client, tool, args, temperature):
    """1e-38 used to overflow to inf/nan in the softmax ("internal error"): now it is greedy."""
    tiny = method_client.call(tool, {**args, "temperature": temperature})
    greedy = method_client.call(tool, {**args, "temperature": 0.0})
    assert not tiny.is_error, text_of(tiny)
    assert not greedy.is_error, text_of(greedy)
    texts = {k: v for k, v in tiny.structured_content.items() if k != "temperature"}
    assert texts == {k: v for k, v in greedy.structured_content.items() if k != "temperature"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"max_new_tokens": True}, "max_new_tokens: must be a JSON number, not a boolean"),
        ({"max_new_tokens": "5"}, "max_new_tokens: must be a JSON number, not a string"),
        ({"seed": False}, "seed: must be a JSON number, not a boolean"),
        ({"temperature": "0.5"}, "temperature: must be a JSON number, not a string"),
        ({"chat": 1}, "chat: must be true or false, not a number"),
        ({"chat": "false"}, "chat: must be true or false, not a string"),
        ({"max_new_tokens": 5.5}, "max_new_tokens: Input should be a valid integer"),
    ],
)
def test_integer_and_boolean_arguments_are_strict(method_client, args, needle):
    result = method_client.call("query_models", {"prompts": ["Once upon a time"], **args})
    assert result.is_error, result.structured_content
    assert needle in text_of(result)


def test_json_numbers_are_still_accepted_for_integers(method_client):
    """What clients legitimately send: 5 and 5.0 (a JSON number with no fraction) for an int."""
    for value in (5, 5.0):
        result = method_client.call(
            "query_models", {"prompts": ["Once upon a time"], "max_new_tokens": value}
        )
        assert not result.is_error, text_of(result)
        assert result.structured_content["max_new_tokens"] == 5


def test_max_new_tokens_past_the_context_says_what_fits(method_client, tool_context):
    limit = tool_context.pair.pair.context_length  # the micro pair's context (128 tokens)
    result = method_client.call(
        "query_models", {"prompts": ["Once upon a time"], "max_new_tokens": limit}
    )
    assert result.is_error
    message = text_of(result)
    assert f"context of {limit} tokens" in message and f"at most {limit - 1}" in message
    over = method_client.call("steer", {"max_new_tokens": 10**6})
    assert over.is_error and "less than or equal to 128" in text_of(over)


def test_errors_never_repeat_huge_inputs(method_client):
    many = {f"unknown_{i:03d}": i for i in range(200)}
    result = method_client.call("query_models", {"prompts": ["hi"], **many})
    message = text_of(result)
    assert result.is_error and "unknown_000" in message and "and 195 more" in message
    assert "unknown_199" not in message and len(message) < 500
    huge_name = "t" * 10_000
    unknown_tool = method_client.call(huge_name, {})
    message = text_of(unknown_tool)
    assert unknown_tool.is_error and "(10000 chars)" in message and len(message) < 500
    assert "query_models" in message  # it says which tools there are
    long_key = method_client.call("query_models", {"prompts": ["hi"], "k" * 10_000: 1})
    assert long_key.is_error and len(text_of(long_key)) < 500
    bad_items = method_client.call("query_models", {"prompts": [""] * 8, "seed": -1, "model": 3})
    message = text_of(bad_items)
    assert bad_items.is_error and "more problems" in message and len(message) < 1_000


def test_a_load_error_does_not_name_the_organism(tmp_path, monkeypatch):
    """`no built 'zoo:NAME'` told an investigator which organism it held: the answer is generic,
    the reason stays in the server's log."""
    monkeypatch.setenv("DIFFSCOPE_HOME", str(tmp_path))  # an empty zoo: nothing is built here
    org = get_organism(MAIN_ORGANISM)

    def load() -> Any:
        return resolve_ref(str(org.finetuned), "micro")

    with pytest.raises(OrganismError, match=MAIN_ORGANISM):
        load()  # the operator's own message does name it
    with live_client(create_server(load, "method", organism=org)) as client:
        result = client.call("query_models", DEFAULT_ARGS["query_models"])
    message = text_of(result)
    assert result.is_error and "failed to load (OrganismError" in message
    assert MAIN_ORGANISM not in message and "zoo:" not in message and "perturb" not in message
