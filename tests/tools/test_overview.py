"""The `overview` tool: top evidence of the methods already cached, never computing anything."""

from __future__ import annotations

from pathlib import Path

from toolsupport import MAIN_ORGANISM, live_client, loaded

from diffscope.diffing.artifacts import Artifacts, CorpusSpec
from diffscope.server import create_server
from diffscope.tools import TOOLS, ToolContext, load_tool_modules
from diffscope.tools.registry import tools_for_profile


def test_overview_is_method_only() -> None:
    load_tool_modules()
    assert "overview" in TOOLS
    assert "overview" in {t.name for t in tools_for_profile("method")}
    assert "overview" not in {t.name for t in tools_for_profile("blackbox")}


def test_cold_cache_computes_nothing(tmp_path: Path) -> None:
    load_tool_modules()
    pair = loaded(MAIN_ORGANISM).pair
    cold = Artifacts(pair, corpus=CorpusSpec(n_docs=50, max_windows=8, window=16), root=tmp_path)
    got = TOOLS["overview"].call(ToolContext(pair=cold), {}).result.model_dump()
    assert [m["method"] for m in got["methods"]] == ["neurons", "diffmining"]
    assert all(not m["cached"] and not m["lines"] and m["note"] for m in got["methods"])
    assert "top_neurons" in got["methods"][0]["note"]
    assert not list(tmp_path.glob("*.safetensors"))  # nothing was computed or written
    assert cold._windows is None  # not even the probe corpus was tokenised


def test_warm_cache_shows_top_evidence(tool_context: ToolContext) -> None:
    with live_client(create_server(tool_context, "method")) as client:
        neurons = client.call("top_neurons", {"k": 3, "exemplars": 0}).structured_content
        client.call("top_promoted_tokens", {"k": 3})
        got = client.call("overview", {"lines": 3}).structured_content
    by_method = {m["method"]: m for m in got["methods"]}
    assert by_method["neurons"]["cached"] and by_method["diffmining"]["cached"]
    top = neurons["neurons"][0]
    assert by_method["neurons"]["lines"][0].startswith(f"L{top['layer']}/N{top['neuron']}:")
    assert len(by_method["neurons"]["lines"]) == 4
    assert by_method["diffmining"]["lines"][0].startswith("promoted: ")
