"""The MCP server in process (`mcp.Client(server)`), with the fake tools of `serverfakes`."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp
import pytest
from serverfakes import build_registry, load_pair

from diffscope.server import create_server
from diffscope.server.app import DiffscopeServer, public_info
from diffscope.tools import Budget, ToolContext


def serve(
    body: Callable[[mcp.Client], Awaitable[Any]],
    server: DiffscopeServer | None = None,
    mode: str = "auto",
) -> Any:
    """Run `body` against a connected in-process client."""
    server = server or create_server(load_pair, registry=build_registry())

    async def main() -> Any:
        async with mcp.Client(server, mode=mode) as client:  # type: ignore[arg-type]
            return await body(client)

    return anyio.run(main)


def text(result: Any) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_list_tools_shows_input_and_output_schemas(mode):
    async def body(client):
        return {tool.name: tool for tool in (await client.list_tools()).tools}

    tools = serve(body, mode=mode)
    assert set(tools) == set(build_registry())
    query = tools["query_models"]
    prompts = query.input_schema["properties"]["prompts"]
    assert prompts["minItems"] == 1 and prompts["maxItems"] == 4
    assert prompts["description"] == "prompts to send to both models"
    tokens = query.input_schema["properties"]["max_new_tokens"]
    assert (tokens["minimum"], tokens["maximum"], tokens["default"]) == (1, 32, 4)
    assert query.input_schema["required"] == ["prompts"]
    assert "mcp_context" not in query.input_schema["properties"]
    assert query.output_schema["properties"]["answers"]["type"] == "array"
    assert set(query.output_schema["required"]) == {"pair", "answers"}
    assert query.description.startswith("Ask both models the prompts.")
    assert query.annotations.read_only_hint is True
    assert query.annotations.idempotent_hint is False
    assert tools["add"].annotations.idempotent_hint is True
    assert tools["add"].output_schema["properties"]["total"]["description"] == "a + b"
    assert tools["echo"].title == "Echo"
    assert tools["fails"].input_schema["properties"]["mode"]["enum"] == [
        "tool",
        "value",
        "crash",
        "bad_return",
    ]


def test_structured_content_and_text_agree():
    async def body(client):
        return await client.call_tool("add", {"a": 2, "b": 40})

    result = serve(body)
    assert not result.is_error
    assert result.structured_content == {"total": 42}
    assert json.loads(text(result)) == {"total": 42}


def test_images_ride_next_to_structured_content():
    async def body(client):
        return await client.call_tool("plot", {"caption": "kl by layer"})

    result = serve(body)
    assert not result.is_error
    assert result.structured_content == {"caption": "kl by layer"}
    images = [block for block in result.content if block.type == "image"]
    assert len(images) == 1 and images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data).startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        ("blackbox", {"query_models"}),
        ("kl", {"query_models", "add", "slow"}),
        ("neurons", {"query_models", "fails"}),
        ("lens", {"query_models", "echo", "plot", "noisy"}),
        ("method", {"query_models", "add", "echo", "slow", "fails", "plot", "noisy"}),
    ],
)
def test_profiles_expose_exactly_their_tools(profile, expected):
    server = create_server(load_pair, profile, registry=build_registry())

    async def body(client):
        listed = {tool.name for tool in (await client.list_tools()).tools}
        hidden = await client.call_tool("echo", {"text": "hi"})
        return listed, hidden

    listed, hidden = serve(body, server)
    assert listed == expected
    assert hidden.is_error == ("echo" not in expected)


def test_unknown_profile_and_empty_profile_are_clear_errors():
    with pytest.raises(ValueError, match="unknown profile 'nope'; valid profiles: .*blackbox"):
        create_server(load_pair, "nope", registry=build_registry())
    reg = build_registry()
    del reg["query_models"]
    with pytest.raises(ValueError, match="no tools"):
        create_server(load_pair, "blackbox", registry=reg)


def test_tool_error_becomes_is_error_with_its_message():
    async def body(client):
        return await client.call_tool("fails", {"mode": "tool"})

    result = serve(body)
    assert result.is_error
    assert text(result) == "mode 'tool' always fails: pick another mode"


@pytest.mark.parametrize(
    ("arguments", "needle"),
    [
        ({"a": "seven"}, "a: must be a JSON number, not a string"),
        ({"a": True}, "a: must be a JSON number, not a boolean"),
        ({"a": 101}, "a: Input should be less than or equal to 100 (got 101)"),
        ({"a": 1, "b": -1}, "b: Input should be greater than or equal to 0"),
        ({}, "a: Field required"),
        ({"a": 1, "bb": 2}, "unknown argument(s) for add: bb; valid arguments: a, b"),
    ],
)
def test_validation_errors_name_the_argument(arguments, needle):
    async def body(client):
        return await client.call_tool("add", arguments)

    result = serve(body)
    assert result.is_error
    assert needle in text(result)
    assert "Traceback" not in text(result)


def test_list_and_json_string_arguments_are_validated():
    async def body(client):
        empty = await client.call_tool("query_models", {"prompts": []})
        too_many = await client.call_tool("query_models", {"prompts": ["p"] * 5})
        as_json = await client.call_tool("query_models", {"prompts": '["a", "b"]'})
        return empty, too_many, as_json

    empty, too_many, as_json = serve(body)
    assert empty.is_error and "prompts: List should have at least 1 item" in text(empty)
    assert too_many.is_error and "prompts: List should have at most 4 items" in text(too_many)
    assert as_json.structured_content == {"pair": "fake-pair", "answers": ["A", "B"]}


def test_budget_exhaustion_is_an_error_answer():
    server = create_server(
        load_pair, registry=build_registry(), budget=Budget(tool_calls=2, model_queries=3)
    )

    async def body(client):
        first = await client.call_tool("query_models", {"prompts": ["a", "b"]})
        over = await client.call_tool("query_models", {"prompts": ["a", "b"]})
        fine = await client.call_tool("add", {"a": 1})
        spent = await client.call_tool("add", {"a": 1})
        budget = await client.read_resource("diffscope://budget")
        return first, over, fine, spent, json.loads(budget.contents[0].text)

    first, over, fine, spent, budget = serve(body, server)
    assert not first.is_error
    assert over.is_error
    assert text(over) == (
        "budget spent: model_queries used 2 of 3; this call needs 2; submit your answer"
    )
    assert not fine.is_error
    assert spent.is_error
    assert text(spent) == "budget spent: tool_calls used 2 of 2; submit your answer"
    assert budget["used"] == {"tool_calls": 2, "model_queries": 2, "generated_tokens": 8}
    assert budget["remaining"]["tool_calls"] == 0


@pytest.mark.parametrize(
    ("mode", "needle"),
    [
        ("crash", "internal error in fails: RuntimeError: boom"),
        ("value", "invalid value in fails: value: Input should be a valid integer"),
        ("bad_return", "internal error in fails: TypeError: tool fails returned str"),
    ],
)
def test_unexpected_failures_are_answers_and_the_server_goes_on(mode, needle, caplog):
    async def body(client):
        failed = await client.call_tool("fails", {"mode": mode})
        after = await client.call_tool("add", {"a": 1, "b": 1})
        tools = await client.list_tools()
        return failed, after, tools

    with caplog.at_level("INFO", logger="diffscope"):
        failed, after, tools = serve(body)
    assert failed.is_error
    assert needle in text(failed)
    assert after.structured_content == {"total": 2}
    assert len(tools.tools) == 7
    if mode == "crash":
        record = next(r for r in caplog.records if "internal error" in r.getMessage())
        assert record.exc_info is not None  # logged with its traceback


def test_concurrent_calls_are_serialised_and_the_loop_keeps_answering():
    server = create_server(load_pair, registry=build_registry())

    async def body(client):
        results: list[Any] = []
        ping_times: list[float] = []

        async def call(i: int) -> None:
            results.append(await client.call_tool("slow", {"seconds": 0.08}))

        async def ping() -> None:
            await anyio.sleep(0.1)
            start = time.perf_counter()
            await client.list_tools()
            ping_times.append(time.perf_counter() - start)

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(call, i)
            tg.start_soon(ping)
        return results, ping_times, time.perf_counter() - start

    results, ping_times, elapsed = serve(body, server)
    assert len(results) == 8
    assert all(not r.is_error for r in results)
    assert {r.structured_content["call"] for r in results} == set(range(1, 9))
    assert max(r.structured_content["overlapping"] for r in results) == 1
    assert server.context.cache["slow_max_active"] == 1
    assert elapsed >= 8 * 0.08 * 0.9  # really one at a time
    assert ping_times[0] < 0.3  # tools/list answered while the model was busy


def test_initialize_and_list_answer_while_the_pair_is_loading():
    release = threading.Event()
    loads = []

    def slow_loader():
        loads.append(time.perf_counter())
        release.wait(10)
        return {"name": "late-pair"}

    server = create_server(slow_loader, registry=build_registry())

    async def body(client):
        assert client.server_info.name == "diffscope"
        start = time.perf_counter()
        listed = await client.list_tools()
        list_time = time.perf_counter() - start
        loading = not server.context.ready
        got: dict[str, Any] = {}

        async def call() -> None:
            got["result"] = await client.call_tool("query_models", {"prompts": ["q"]})

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            await anyio.sleep(0.2)
            waited = "result" not in got
            release.set()
        return listed, list_time, loading, waited, got["result"]

    start = time.perf_counter()
    listed, list_time, loading, waited, result = serve(body, server, mode="legacy")
    assert loads and loads[0] >= start  # loading started when the server started
    assert len(listed.tools) == 7 and list_time < 1.0
    assert loading and waited
    assert result.structured_content == {"pair": "late-pair", "answers": ["Q"]}


def test_failed_load_is_reported_by_tool_calls():
    def broken():
        raise FileNotFoundError("no such model folder: /nowhere")

    server = create_server(broken, registry=build_registry())

    async def body(client):
        first = await client.call_tool("add", {"a": 1})
        listed = await client.list_tools()
        return first, listed

    first, listed = serve(body, server)
    assert first.is_error
    assert "failed to load (FileNotFoundError; the server's log has the reason)" in text(first)
    assert "/nowhere" not in text(first)  # the reason (paths, zoo:NAME) stays in the log
    assert len(listed.tools) == 7


def test_progress_notifications_arrive():
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async def body(client):
        with_progress = await client.call_tool(
            "slow", {"seconds": 0.04}, progress_callback=on_progress
        )
        without = await client.call_tool("slow", {"seconds": 0.04})
        return with_progress, without

    for mode in ("auto", "legacy"):
        seen.clear()
        with_progress, without = serve(body, mode=mode)
        assert not with_progress.is_error and not without.is_error
        assert [p for p, _, _ in seen] == [0.25, 0.5, 0.75, 1.0], mode
        assert all(total == 1.0 for _, total, _ in seen)
        assert seen[-1][2] == "step 4 of 4"


def test_organism_resource_is_public_only():
    secret = "the fine-tune now loves the French language"

    class FakeOrganism:
        def public_view(self) -> dict[str, Any]:
            return {"name": "toy-french", "base": "zoo:base", "zoo": {"recipe": "french"}}

    for organism in (
        {"name": "toy-french", "ground_truth": {"description": secret}, "notes": secret},
        FakeOrganism(),
    ):
        server = create_server(load_pair, registry=build_registry(), organism=organism)

        async def body(client):
            listed = await client.list_resources()
            read = await client.read_resource("diffscope://organism")
            return {str(r.uri) for r in listed.resources}, read.contents[0].text

        uris, body_text = serve(body, server)
        assert "diffscope://organism" in uris and "diffscope://budget" in uris
        info = json.loads(body_text)
        assert info["name"] == "toy-french"
        assert secret not in body_text and "ground_truth" not in info and "zoo" not in info
    assert public_info(None) == {}


def test_a_ready_context_can_be_served():
    ctx = ToolContext(pair={"name": "given"}, budget=Budget(tool_calls=1))
    server = create_server(ctx, "blackbox", registry=build_registry(), instructions="hi")

    async def body(client):
        return client.instructions, await client.call_tool("query_models", {"prompts": ["x"]})

    instructions, result = serve(body, server, mode="legacy")
    assert instructions == "hi"
    assert result.structured_content["pair"] == "given"
    assert server.context is ctx and server.profile == "blackbox"
    with pytest.raises(ValueError, match="budget"):
        create_server(ctx, budget=Budget(), registry=build_registry())
    with pytest.raises(TypeError):
        create_server("not a loader", registry=build_registry())  # type: ignore[arg-type]
