"""The tool framework without MCP: registration, validation, budgets, profiles, the context."""

from __future__ import annotations

import threading
import time
from typing import Annotated

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field
from serverfakes import AddResult, build_registry, load_pair

from diffscope.tools import (
    PROFILES,
    Budget,
    Budgets,
    Charge,
    Image,
    ToolContext,
    ToolError,
    ToolRegistry,
    tools_for_profile,
)


def test_tool_def_reads_signature_docstring_and_result():
    reg = build_registry()
    add = reg["add"]
    assert add.summary == "Add two small numbers."
    assert [p.name for p in add.params] == ["a", "b"]
    assert add.result is AddResult
    assert add.tags == {"kl"}
    assert reg["query_models"].description.splitlines()[0] == "Ask both models the prompts."
    assert reg["plot"].result.__name__ == "PlotResult"


def test_call_in_process_validates_and_charges():
    reg = build_registry()
    ctx = ToolContext(pair={"name": "p"}, budget=Budget(model_queries=3))
    out = reg["query_models"].call(ctx, {"prompts": ["a", "b"]})
    assert out.result.answers == ["A", "B"]
    assert ctx.budgets.usage().model_queries == 2
    assert ctx.budgets.usage().generated_tokens == 8
    with pytest.raises(ToolError, match="prompts"):
        reg["query_models"].call(ctx, prompts=[])
    with pytest.raises(ToolError, match="budget spent: model_queries used 2 of 3"):
        reg["query_models"].call(ctx, prompts=["x", "y"])
    assert ctx.budgets.usage().model_queries == 2  # a refused call spends nothing
    with pytest.raises(ToolError, match="unexpected|Extra inputs"):
        reg["add"].call(ctx, a=1, c=2)


def test_images_and_bad_returns_are_normalised():
    reg = build_registry()
    ctx = ToolContext(pair={})
    out = reg["plot"].call(ctx)
    assert out.result.caption == "a plot"
    assert out.images[0].data.startswith(b"\x89PNG")
    with pytest.raises(TypeError, match="want FailResult"):
        reg["fails"].call(ctx, mode="bad_return")


def test_image_from_figure_uses_savefig():
    class Figure:
        def savefig(self, buffer, **kwargs):
            assert kwargs["format"] == "png"
            buffer.write(b"\x89PNGdata")

    assert Image.from_figure(Figure()).data == b"\x89PNGdata"


def test_registration_rejects_malformed_tools():
    reg = ToolRegistry()

    def no_doc(ctx: ToolContext) -> AddResult:
        return AddResult(total=0)

    with pytest.raises(TypeError, match="docstring"):
        reg.tool()(no_doc)

    def no_model(ctx: ToolContext) -> int:
        """Returns an int."""
        return 1

    with pytest.raises(TypeError, match="pydantic model"):
        reg.tool()(no_model)

    def star(ctx: ToolContext, *values: int) -> AddResult:
        """Star args."""
        return AddResult(total=0)

    with pytest.raises(TypeError, match=r"\*args"):
        reg.tool()(star)

    def untyped(ctx: ToolContext, x) -> AddResult:
        """Untyped."""
        return AddResult(total=0)

    with pytest.raises(TypeError, match="annotation"):
        reg.tool()(untyped)

    def ok(ctx: ToolContext) -> AddResult:
        """Fine."""
        return AddResult(total=0)

    reg.tool()(ok)
    with pytest.raises(ValueError, match="already registered"):
        reg.tool()(ok)
    with pytest.raises(TypeError, match="parentheses"):
        reg.tool(ok)  # type: ignore[arg-type]


def test_profiles_select_by_tag_and_list_valid_names():
    reg = build_registry()
    names = lambda profile: {t.name for t in reg.tools_for_profile(profile)}  # noqa: E731
    assert names("blackbox") == {"query_models"}
    assert names("method") == set(reg)
    assert names("kl") == {"query_models", "add", "slow"}
    assert names("lens") == {"query_models", "echo", "plot", "noisy"}
    assert names("neurons") == {"query_models", "fails"}
    assert names("crosscoder") == {"query_models"}
    assert names("kl,lens") == names("kl") | names("lens")
    with pytest.raises(ValueError, match="valid profiles: .*blackbox.*method"):
        reg.tools_for_profile("nope")
    assert {"blackbox", "method", "neurons", "crosscoder", "kl", "diffmining", "lens"} <= set(
        PROFILES
    )
    with pytest.raises(ValueError, match="valid profiles"):
        tools_for_profile("nope")


def test_custom_tags_become_profiles():
    reg = ToolRegistry()

    @reg.tool(tags=("custom",))
    def thing(ctx: ToolContext) -> AddResult:
        """A tool with a new tag."""
        return AddResult(total=1)

    assert [t.name for t in reg.tools_for_profile("custom")] == ["thing"]


def test_budget_messages_and_unlimited_default():
    budgets = Budgets(Budget(tool_calls=1, generated_tokens=10))
    budgets.charge()
    with pytest.raises(ToolError) as info:
        budgets.charge()
    assert str(info.value) == "budget spent: tool_calls used 1 of 1; submit your answer"
    budgets.charge(tool_calls=0, tokens=8)
    with pytest.raises(ToolError, match="generated_tokens used 8 of 10; this call needs 5"):
        budgets.charge(tool_calls=0, tokens=5)
    budgets.charge(tool_calls=0, tokens=5, strict=False)
    assert budgets.usage().generated_tokens == 13
    assert budgets.remaining() == {"tool_calls": 0, "model_queries": None, "generated_tokens": 0}
    free = Budgets()
    for _ in range(1000):
        free.charge(model_queries=3)
    assert free.usage().model_queries == 3000
    with pytest.raises(ValueError):
        free.charge(tool_calls=-1)


@settings(max_examples=25, deadline=None)
@given(limit=st.integers(0, 40), threads=st.integers(1, 8), each=st.integers(1, 10))
def test_budget_is_exact_under_concurrent_charges(limit, threads, each):
    budgets = Budgets(Budget(model_queries=limit))
    granted = []
    lock = threading.Lock()

    def worker():
        for _ in range(each):
            try:
                budgets.charge(tool_calls=0, model_queries=1)
            except ToolError:
                continue
            with lock:
                granted.append(1)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert len(granted) == min(limit, threads * each) == budgets.usage().model_queries


def test_context_loads_in_background_and_reports_failures():
    release = threading.Event()

    def loader():
        release.wait(5)
        return "pair"

    ctx = ToolContext(loader)
    ctx.start_loading()
    ctx.start_loading()
    assert not ctx.ready
    assert not ctx.wait_ready(0.05)
    release.set()
    assert ctx.pair == "pair"
    assert ctx.ready

    def broken():
        raise OSError("no weights here")

    bad = ToolContext(broken)
    with pytest.raises(ToolError, match="failed to load \\(OSError; the server's log") as raised:
        _ = bad.pair
    assert "no weights here" not in str(raised.value)
    with pytest.raises(ValueError):
        ToolContext(load_pair, pair={})


def test_progress_hook_is_per_thread_and_deduplicated():
    ctx = ToolContext(pair=None)
    seen: list[tuple[float, str | None]] = []
    ctx.progress(0.5, "nobody listens")
    ctx.set_progress_hook(lambda f, m: seen.append((f, m)))
    for fraction in (0.1, 0.101, 0.5, 2.0):
        ctx.progress(fraction, "work")
    other: list[int] = []
    thread = threading.Thread(target=lambda: other.append(ctx.progress(0.3, "x") or 1))
    thread.start()
    thread.join()
    assert seen == [(0.1, "work"), (0.5, "work"), (1.0, "work")]
    ctx.set_progress_hook(lambda f, m: 1 / 0)
    ctx.progress(0.9, "a hook that fails is ignored")


def test_model_lock_serialises_direct_calls():
    reg = ToolRegistry()
    active = {"now": 0, "max": 0}

    class Out(BaseModel):
        ok: bool

    @reg.tool(cost=Charge(model_queries=1))
    def work(ctx: ToolContext, pause: Annotated[float, Field(ge=0, le=1)] = 0.01) -> Out:
        """Hold the model for a moment."""
        active["now"] += 1
        active["max"] = max(active["max"], active["now"])
        time.sleep(pause)
        active["now"] -= 1
        return Out(ok=True)

    ctx = ToolContext(pair="p")
    pool = [threading.Thread(target=reg["work"].call, args=(ctx,)) for _ in range(6)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert active["max"] == 1
    assert ctx.budgets.usage().model_queries == 6
