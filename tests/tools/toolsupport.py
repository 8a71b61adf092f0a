"""Helpers for the tool tests: micro organisms as cheap Artifacts, and a live in-process MCP client
that synchronous tests (and hypothesis) can call without reconnecting for every call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import mcp
from anyio.from_thread import BlockingPortal, start_blocking_portal

from diffscope.diffing.artifacts import Artifacts, CorpusSpec
from diffscope.organisms.registry import OrganismError, get_organism, load_pair
from diffscope.organisms.zoo import build_zoo

MAIN_ORGANISM = "perturb_flip_k5"
# a small probe corpus keeps first-use artifacts (profile, mining with NMF, clusters) to seconds
TEST_CORPUS = CorpusSpec(n_docs=100, max_windows=16, window=16)
CROSSCODER_STEPS = 100
DEFAULT_ARGS: dict[str, dict[str, Any]] = {"query_models": {"prompts": ["Once upon a time"]}}


@cache
def loaded(name: str) -> Artifacts:
    """The micro organism `name` (built first if needed) as Artifacts over the test corpus, with a
    briefly trained crosscoder (the crosscoder tools only serve one trained ahead)."""
    org = get_organism(name)
    try:
        pair = load_pair(org, size="micro")
    except OrganismError:
        build_zoo("micro", only=[name], progress=False)
        pair = load_pair(org, size="micro")
    arts = Artifacts(pair, corpus=TEST_CORPUS)
    arts.crosscoder(steps=CROSSCODER_STEPS, progress=False)
    return arts


def text_of(result: Any) -> str:
    """Every text block of a tool result, joined."""
    return "\n".join(block.text for block in result.content if block.type == "text")


def everything_in(result: Any) -> str:
    """All text a caller can see in a tool result: text blocks and structured content."""
    structured = json.dumps(result.structured_content) if result.structured_content else ""
    return text_of(result) + "\n" + structured


class LiveClient:
    """A connected mcp.Client living in a background event loop; methods are synchronous."""

    def __init__(self, portal: BlockingPortal, client: mcp.Client) -> None:
        self.portal = portal
        self.client = client

    def call(self, name: str, arguments: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.portal.call(
            lambda: self.client.call_tool(name, arguments or {}, **kwargs)  # type: ignore[arg-type]
        )

    def run(self, method: str, *args: Any) -> Any:
        """Call any async client method by name (list_tools, read_resource, ...)."""
        return self.portal.call(getattr(self.client, method), *args)


@contextmanager
def live_client(server: Any) -> Iterator[LiveClient]:
    """Connect a client to `server` in process for the duration of the block."""
    with start_blocking_portal() as portal:
        manager = portal.wrap_async_context_manager(mcp.Client(server))  # type: ignore[arg-type]
        with manager as client:
            yield LiveClient(portal, client)
