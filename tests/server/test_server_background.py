"""Nothing blocks past the client's timeout: a cold server answers "preparing" at once, a cancelled
call stops its worker thread, and preparation hands the models to a waiting call between batches.
Fake tools (serverfakes) over an in-process `mcp.Client`."""

from __future__ import annotations

import json
import threading
import time
from typing import Annotated, Any

import anyio
import mcp
from pydantic import BaseModel, Field
from serverfakes import build_registry

from diffscope.server import create_server
from diffscope.server.prepare import Job, Preparer
from diffscope.tools import Budget, ToolContext


class SpinResult(BaseModel):
    """How many steps the spin ran."""

    steps: int


def spin_registry(state: dict[str, Any]):
    """The fake registry plus `spin`: works in small steps, reporting progress, until done."""
    reg = build_registry()

    @reg.tool(tags=("kl",))
    def spin(
        ctx: ToolContext,
        steps: Annotated[int, Field(ge=1, le=100_000, description="steps of 10 ms")] = 2000,
    ) -> SpinResult:
        """Work for `steps` x 10 ms."""
        state["started"].set()
        done = 0
        try:
            for done in range(1, steps + 1):
                time.sleep(0.01)
                ctx.progress(done / steps, f"step {done}")
            state["completed"] = True
            return SpinResult(steps=done)
        finally:
            state["steps"] = done
            state["stopped_at"] = time.monotonic()

    return reg


def test_cancelled_call_stops_its_thread():
    state: dict[str, Any] = {"started": threading.Event(), "completed": False}
    ctx = ToolContext(pair={"name": "fake-pair"})
    server = create_server(ctx, "method", registry=spin_registry(state), log_level="WARNING")

    async def main() -> tuple[float, Any]:
        async with mcp.Client(server) as client:
            with anyio.move_on_after(0.6):
                await client.call_tool("spin", {"steps": 2000})  # 20 s if never stopped
            cancelled_at = time.monotonic()
            again = await client.call_tool("add", {"a": 1, "b": 2})  # the lock was released
            return cancelled_at, again

    cancelled_at, again = anyio.run(main)
    deadline = time.monotonic() + 5
    while "stopped_at" not in state and time.monotonic() < deadline:
        time.sleep(0.02)
    assert state["started"].is_set()
    assert "stopped_at" in state, "the worker thread kept running after the cancel"
    assert not state["completed"]
    assert state["stopped_at"] - cancelled_at < 1.0  # stopped at its next progress step
    assert state["steps"] < 200
    assert again.structured_content == {"total": 3}


def test_cold_server_answers_preparing_then_the_result():
    release = threading.Event()

    def slow_loader() -> dict[str, str]:
        release.wait(30)
        return {"name": "fake-pair"}

    server = create_server(
        slow_loader,
        "method",
        registry=build_registry(),
        budget=Budget(tool_calls=5),
        log_level="WARNING",
        prepare_in_background=True,
        ready_wait_s=0.3,
    )

    async def main() -> tuple[Any, ...]:
        async with mcp.Client(server) as client:
            listed = await client.list_tools()
            start = time.monotonic()
            cold = await client.call_tool("add", {"a": 1, "b": 2})
            took = time.monotonic() - start
            status = json.loads((await client.read_resource("diffscope://status")).contents[0].text)
            budget = json.loads((await client.read_resource("diffscope://budget")).contents[0].text)
            release.set()
            warm = None
            for _ in range(100):
                warm = await client.call_tool("add", {"a": 1, "b": 2})
                if warm.structured_content.get("status") != "preparing":
                    break
                await anyio.sleep(0.05)
            after = await client.read_resource("diffscope://status")
            return listed, cold, took, status, budget, warm, json.loads(after.contents[0].text)

    listed, cold, took, status, budget, warm, jobs = anyio.run(main)
    names = {tool.name for tool in listed.tools}
    # no tool here reads what a job computes (a mean difference, a crosscoder): no job tools
    assert not {"start_job", "job_status", "cancel_job"} & names
    add_schema = next(t for t in listed.tools if t.name == "add").output_schema
    assert len(add_schema["anyOf"]) == 2  # the result, or the preparing answer
    assert took < 5
    answer = cold.structured_content
    assert not cold.is_error and answer["status"] == "preparing"
    assert answer["waiting_for"] == "the model pair"
    assert answer["ready_tools"] == []
    assert "add" in answer["message"] and "Nothing was charged" in answer["message"]
    assert status["pair_loaded"] is False
    assert budget["used"]["tool_calls"] == 0  # a preparing answer costs nothing
    assert warm.structured_content == {"total": 3}
    listed_jobs = jobs["jobs"]
    assert listed_jobs[0]["state"] == "completed" and listed_jobs[0]["artifact"] == "pair"
    assert "add" in jobs["ready_tools"]


def test_background_work_hands_the_models_to_a_waiting_call():
    """A job holding the model lock lets a tool call in between its batches."""
    ctx = ToolContext(pair={"name": "fake-pair"})
    preparer = Preparer(ctx, ["add"], log_every_s=0.0)
    order: list[str] = []
    in_job = threading.Event()
    release = threading.Event()

    def batches() -> None:
        for step in range(50):
            in_job.set()
            time.sleep(0.01)
            order.append(f"batch {step}")
            ctx.progress((step + 1) / 50, "batch")
            if step == 5:
                release.wait(5)

    job = Job("job-x", "fake", "a fake artifact", batches)
    runner = threading.Thread(target=preparer._run, args=(job,))
    runner.start()
    assert in_job.wait(5)

    def call() -> None:
        with ctx.lock:
            order.append("call")

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.1)
    release.set()
    caller.join(5)
    runner.join(10)
    assert job.state == "completed" and job.fraction == 1.0
    assert "call" in order
    assert order.index("call") < len(order) - 10  # it ran between batches, not after the job


def test_a_cancelled_job_stops_at_its_next_batch():
    ctx = ToolContext(pair={"name": "fake-pair"})
    preparer = Preparer(ctx, ["add"])
    steps: list[int] = []

    def batches() -> None:
        for step in range(1000):
            time.sleep(0.005)
            steps.append(step)
            ctx.progress(step / 1000, "batch")

    job = Job("job-y", "fake", "a fake artifact", batches)
    preparer._jobs[job.id] = job
    runner = threading.Thread(target=preparer._run, args=(job,))
    job.state = "working"
    runner.start()
    time.sleep(0.2)
    preparer.cancel(job.id)
    runner.join(5)
    assert job.state == "cancelled"
    assert len(steps) < 500


def test_the_agent_session_waits_out_preparing_answers():
    """`ToolSession` (what investigators and the bench call through) polls a "preparing" answer
    as the server suggests and hands back the real result."""
    from diffscope.agent.session import ToolSession

    release = threading.Event()

    def slow_loader() -> dict[str, str]:
        release.wait(30)
        return {"name": "fake-pair"}

    server = create_server(
        slow_loader,
        "method",
        registry=build_registry(),
        log_level="WARNING",
        prepare_in_background=True,
        ready_wait_s=0.2,
    )
    threading.Timer(1.0, release.set).start()

    async def main() -> Any:
        async with ToolSession.connect(server) as session:
            return await session.call_tool("add", {"a": 20, "b": 22})

    result = anyio.run(main)
    assert not result.is_error and result.structured == {"total": 42}


def test_a_ready_tool_answers_preparing_while_the_models_stay_busy():
    ctx = ToolContext(pair={"name": "fake-pair"})
    server = create_server(
        ctx,
        "method",
        registry=build_registry(),
        log_level="WARNING",
        prepare_in_background=True,
        ready_wait_s=0.3,
    )
    held, release = threading.Event(), threading.Event()

    def background() -> None:
        with ctx.lock.held_in_background():  # a batch that does not end within the wait
            held.set()
            release.wait(10)

    threading.Thread(target=background).start()
    assert held.wait(5)

    async def main() -> tuple[Any, float, Any]:
        async with mcp.Client(server) as client:
            start = time.monotonic()
            busy = await client.call_tool("add", {"a": 1, "b": 2})
            took = time.monotonic() - start
            release.set()
            return busy, took, await client.call_tool("add", {"a": 1, "b": 2})

    busy, took, after = anyio.run(main)
    assert took < 3
    assert busy.structured_content["status"] == "preparing"
    assert busy.structured_content["waiting_for"] == "the models (busy)"
    assert after.structured_content == {"total": 3}


def test_a_2025_06_18_client_lists_the_preparing_tools():
    """Such clients (Claude Desktop among them) validate every output schema as an object at its
    top; the result-or-preparing schemas must say so, or `tools/list` fails for them."""
    server = create_server(
        lambda: {"name": "fake-pair"},
        "method",
        registry=build_registry(),
        log_level="WARNING",
        prepare_in_background=True,
    )

    async def main() -> Any:
        async with mcp.Client(server, mode="legacy") as client:
            return await client.list_tools()

    listed = anyio.run(main)
    schemas = {tool.name: tool.output_schema for tool in listed.tools if tool.output_schema}
    assert "add" in schemas
    assert all(schema["type"] == "object" for schema in schemas.values())
