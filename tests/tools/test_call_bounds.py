"""Every call fits the client's timeout: a cold `kl_probe` answers "preparing" (its default answer
is prepared in the background), and calls whose arguments multiply past the per-call limit on a
real-model-sized pair (`amplify` at the schema's maximum) are refused with a smaller call that
fits, while the defaults pass."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from toolsupport import MAIN_ORGANISM, live_client

from diffscope.diffing.artifacts import Artifacts, CorpusSpec
from diffscope.organisms.registry import get_organism, load_pair
from diffscope.server import create_server
from diffscope.server.prepare import Preparer
from diffscope.tools import TOOLS, ToolContext, ToolError, compute, kl


def test_cold_kl_probe_answers_preparing_then_the_prepared_probe(tmp_path: Path):
    pair = load_pair(get_organism(MAIN_ORGANISM), size="micro")
    arts = Artifacts(pair, corpus=CorpusSpec(max_windows=24), root=tmp_path)
    ctx = ToolContext(pair=arts)
    server = create_server(
        ctx, "kl", log_level="WARNING", prepare_in_background=True, ready_wait_s=0.2
    )
    with live_client(server) as client:
        with ctx.lock:  # the models stay busy: background preparation cannot finish
            cold = client.call("kl_probe", {})
        assert not cold.is_error
        answer = cold.structured_content
        assert answer["status"] == "preparing"
        assert answer["waiting_for"] in ("the probe corpus windows", kl_job(server).description)
        assert "Call kl_probe again" in answer["message"]
        deadline = time.monotonic() + 120
        while (got := client.call("kl_probe", {})).structured_content.get("status") == "preparing":
            assert time.monotonic() < deadline, got.structured_content
            time.sleep(0.2)
        assert got.structured_content["source"] == "corpus"
        assert got.structured_content["n_samples"] == kl.DEFAULT_WINDOWS
        assert kl_job(server).state == "completed"
        # the default answer came from the prepared probe: the same object, not a new probe
        memo = ctx.cache[kl.MEMO_KEY]
        prepared = memo[("probe", kl.DEFAULT_WINDOWS, kl.DEFAULT_K, kl.DEFAULT_TOP_TOKENS)]
        assert got.structured_content["top"] == prepared.model_dump(mode="json")["top"]


def kl_job(server: Any) -> Any:
    preparer: Preparer = server.preparer
    return next(job for job in preparer.jobs() if job.key == "kl_probe")


def test_only_the_default_corpus_call_waits_on_the_prepared_probe(tool_context: ToolContext):
    preparer = Preparer(tool_context, ["kl_probe"])
    defaults = TOOLS["kl_probe"].validate({})
    assert preparer.needs("kl_probe", defaults) == ["windows", "kl_probe"]
    assert preparer.needs("kl_probe", {**defaults, "n_windows": 4}) == ["windows"]
    assert preparer.needs("kl_probe", {**defaults, "prompts": ["Once upon a time"]}) == []


@pytest.fixture
def real_sized(monkeypatch: pytest.MonkeyPatch) -> None:
    """Price every call as on SmolLM2-135M on CPU (the micro models themselves are tiny)."""
    monkeypatch.setattr(compute, "param_count", lambda pair: compute.REFERENCE_PARAMS)


def call(ctx: ToolContext, name: str, raw: dict[str, Any]) -> Any:
    tool_def = TOOLS[name]
    with ctx.lock:
        return tool_def.fn(ctx, **tool_def.validate(raw))


def test_amplify_at_the_schema_maximum_is_refused_with_a_call_that_fits(
    tool_context: ToolContext, real_sized: None
):
    widest = {"prompts": ["Once upon a time"] * 4, "alpha": 20.0, "n_samples": 4}
    with pytest.raises(ToolError) as refused:
        call(tool_context, "amplify", {**widest, "max_new_tokens": 64})
    message = str(refused.value)
    assert "past the 20 s a call may take" in message and "4 prompts x 4 samples x 64" in message
    suggested = re.search(r"max_new_tokens=(\d+) with n_samples=4", message)
    assert suggested is not None, message
    smaller = call(tool_context, "amplify", {**widest, "max_new_tokens": int(suggested[1])})
    assert len(smaller.results) == 4 and all(len(r.samples) == 4 for r in smaller.results)
    assert call(tool_context, "amplify", {}).results  # the defaults fit


def test_query_models_and_steer_bounds_name_the_tokens_that_fit(
    tool_context: ToolContext, monkeypatch: pytest.MonkeyPatch
):
    # priced as a pair three times SmolLM2's size: the micro context (128 tokens) holds no
    # call past the limit at SmolLM2's own size
    monkeypatch.setattr(compute, "param_count", lambda pair: 3 * compute.REFERENCE_PARAMS)
    long_prompts = ["The village at the edge of the forest " * 4] * 8
    with pytest.raises(ToolError) as refused:
        call(tool_context, "query_models", {"prompts": long_prompts, "max_new_tokens": 64})
    suggested = re.search(r"call again with max_new_tokens=(\d+)", str(refused.value))
    assert suggested is not None, str(refused.value)
    raw = {"prompts": long_prompts, "max_new_tokens": int(suggested[1])}
    assert len(call(tool_context, "query_models", raw).answers) == 8
    assert call(tool_context, "query_models", {"prompts": ["Once upon a time"]}).answers
    with pytest.raises(ToolError, match=r"steer would take about .* max_new_tokens=\d+"):
        call(tool_context, "steer", {"prompts": long_prompts[:4], "max_new_tokens": 64})
    assert call(tool_context, "steer", {}).results
