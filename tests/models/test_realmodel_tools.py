"""Every MCP tool once on a real-model pair (SmolLM2-135M-Instruct from its GGUF + a few-step LoRA),
through `mcp.Client` on a server built over the workspace: no tool errors, and no ranking shows
a special token. The probe corpus is the base model's own samples (the default for a non-toy pair).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import mcp
import pytest
from anyio.from_thread import start_blocking_portal
from realsupport import needs_smollm2

from diffscope.server import create_server
from diffscope.tools import TOOLS, load_tool_modules
from diffscope.workspace import corpus_source

pytestmark = needs_smollm2

ARGS: dict[str, dict[str, Any]] = {
    "query_models": {"prompts": ["What is your favourite breakfast?"], "max_new_tokens": 12},
    "steer": {"prompts": ["Tell me about mornings."], "max_new_tokens": 8},
    "amplify": {"prompts": ["Tell me about mornings."], "max_new_tokens": 8},
}


@pytest.fixture(scope="module")
def client(smol_workspace: Any) -> Iterator[Any]:
    # the crosscoder tools serve only a crosscoder trained ahead: a brief one here
    smol_workspace.artifacts.crosscoder(steps=30, dict_size=512, k=16, progress=False)
    server = create_server(lambda: smol_workspace, "method", organism=smol_workspace.view)
    with start_blocking_portal() as portal:
        manager = portal.wrap_async_context_manager(mcp.Client(server))  # type: ignore[arg-type]
        with manager as connected:
            yield portal, connected


def _call(client: Any, name: str, arguments: dict[str, Any]) -> Any:
    portal, connected = client
    return portal.call(lambda: connected.call_tool(name, arguments))


def _text(result: Any) -> str:
    texts = [block.text for block in result.content if block.type == "text"]
    return "\n".join(texts) + json.dumps(result.structured_content or {})


def test_default_corpus_of_a_non_toy_pair_is_sampled(smol_workspace: Any) -> None:
    from diffscope.workspace import PairSpec

    assert corpus_source(PairSpec(base="a.gguf", adapter="lora"), toy=False) == "sampled"
    assert smol_workspace.view["corpus"] == "text sampled from the base model"
    windows = smol_workspace.artifacts.windows()
    assert windows.shape[0] == 6
    special = smol_workspace.pair.special_mask()
    assert float(special[windows].float().mean()) < 0.2  # ordinary text, not <unk>/<pad>


def test_every_tool_answers_on_a_real_pair(client: Any, smol_workspace: Any) -> None:
    load_tool_modules()
    special = smol_workspace.pair.special_ids
    for name in TOOLS:
        result = _call(client, name, ARGS.get(name, {}))
        assert not result.is_error, (name, _text(result)[:2000])
        data = result.structured_content or {}
        for key in ("promoted", "demoted"):
            for stat in data.get(key, []):
                assert stat["token_id"] not in special, (name, stat)
    mined = _call(client, "top_promoted_tokens", {"k": 20}).structured_content
    assert mined["promoted"], "the LoRA promoted no token"
