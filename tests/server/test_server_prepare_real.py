"""Background preparation on a real micro organism with an empty artifact cache: a heavy tool
answers "preparing" within seconds while the neuron profile is computed, then the real result;
a lens at another layer queues its own job; `start_job` / `job_status` follow a job to the end;
and with everything cached a fresh server is ready at once."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import mcp
import pytest

from diffscope.diffing.artifacts import Artifacts, CorpusSpec
from diffscope.server import create_server
from diffscope.tools import ToolContext

ORGANISM = "perturb_flip_k5"
CORPUS = CorpusSpec(n_docs=100, max_windows=16, window=16)


@pytest.fixture(scope="module")
def pair(micro_zoo):
    from diffscope.organisms.registry import get_organism, load_pair

    return load_pair(get_organism(ORGANISM), size="micro")


def server_over(pair: Any, root: Path, wait_s: float = 1.0):
    ctx = ToolContext(pair=Artifacts(pair, corpus=CORPUS, root=root))
    server = create_server(
        ctx, "method", log_level="WARNING", prepare_in_background=True, ready_wait_s=wait_s
    )
    return ctx, server


async def until_ready(client: mcp.Client, name: str, args: dict[str, Any], limit: float = 240):
    """Call until the answer is not "preparing"; (answer, number of preparing answers)."""
    deadline = time.monotonic() + limit
    waits = 0
    while True:
        answer = await client.call_tool(name, args)
        if (answer.structured_content or {}).get("status") != "preparing":
            return answer, waits
        waits += 1
        assert time.monotonic() < deadline, f"{name} never became ready"
        await anyio.sleep(0.2)


def test_cold_server_answers_preparing_then_serves_the_artifact(pair, tmp_path: Path):
    ctx, server = server_over(pair, tmp_path)
    ctx.lock.acquire()  # hold the models: preparation cannot finish before the first calls

    async def main() -> dict[str, Any]:
        async with mcp.Client(server) as client:
            start = time.monotonic()
            cold = await client.call_tool("top_neurons", {})
            took = time.monotonic() - start
            status = json.loads((await client.read_resource("diffscope://status")).contents[0].text)
            ctx.lock.release()
            warm, _ = await until_ready(client, "top_neurons", {})
            lens, lens_waits = await until_ready(client, "difference_lens", {"layer": 0})
            started = await client.call_tool("start_job", {"kind": "mean_diff", "layer": 1})
            job_id = started.structured_content["id"]
            for _ in range(600):
                job = await client.call_tool("job_status", {"job_id": job_id})
                if job.structured_content["jobs"][0]["state"] == "completed":
                    break
                await anyio.sleep(0.1)
            budget = json.loads((await client.read_resource("diffscope://budget")).contents[0].text)
            return dict(cold=cold, took=took, status=status, warm=warm, lens=lens,
                        lens_waits=lens_waits, job=job, budget=budget)  # fmt: skip

    got = anyio.run(main)
    cold = got["cold"].structured_content
    assert got["took"] < 5
    assert cold["status"] == "preparing" and cold["tool"] == "top_neurons"
    assert cold["waiting_for"] == "the neuron profile"
    assert 0.0 <= cold["fraction_done"] < 1.0
    assert "query_models" in cold["ready_tools"] and "top_neurons" not in cold["ready_tools"]
    assert "top_neurons again" in cold["message"]
    described = {job["description"] for job in got["status"]["jobs"]}
    assert "the neuron profile" in described and "the logit-diff mining" in described
    warm = got["warm"].structured_content
    assert not got["warm"].is_error and warm["neurons"] and warm["n_layers"] == pair.n_layers
    assert not got["lens"].is_error and got["lens"].structured_content["layer"] == 0
    assert got["job"].structured_content["jobs"][0]["artifact"] == "mean_diff@1"
    assert got["job"].structured_content["jobs"][0]["state"] == "completed"
    assert "difference_lens" in got["job"].structured_content["ready_tools"]
    # only the calls that ran are charged: top_neurons and difference_lens once each
    assert got["budget"]["used"]["tool_calls"] == 2


def test_with_artifacts_cached_a_fresh_server_is_ready_at_once(pair, tmp_path: Path):
    first_ctx, _ = server_over(pair, tmp_path)
    arts = first_ctx.pair
    arts.neuron_profile()
    arts.diff_mining()
    arts.mean_diff(pair.n_layers // 2, 5)
    _, server = server_over(pair, tmp_path, wait_s=3.0)  # a new process would see the same files

    async def main() -> list[Any]:
        async with mcp.Client(server) as client:
            return [
                await client.call_tool("top_neurons", {}),
                await client.call_tool("top_promoted_tokens", {}),
                await client.call_tool("difference_lens", {}),
            ]

    for answer in anyio.run(main):
        assert not answer.is_error
        assert answer.structured_content.get("status") != "preparing"
