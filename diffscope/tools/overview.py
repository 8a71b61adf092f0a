"""`overview`: where to look first, from the artifacts already cached for the pair, in a few lines.

For each method whose artifact is already in the pair's cache (in memory or on disk with a sound
manifest), a few lines of its top evidence: the neurons with the largest activation gaps (the
neuron profile) and the tokens the fine-tune promotes and demotes with their NMF topics (the
logit-diff mining). A method with nothing cached says so and names the tool that computes it.
The tool never computes anything (no forward pass, no training, no artifact built): an uncached
artifact stays uncached, so the call answers at once and costs no model queries.

It is tagged `overview`, so it is in the `method` profile (and its own `overview` profile) but not
in `blackbox`: its lines come from the models' activations and logits, which a blackbox
investigator must not see.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any

from pydantic import BaseModel, Field

from diffscope.diffing.artifacts import Artifacts
from diffscope.diffing.cache import ArtifactCache, check_manifest
from diffscope.diffing.neurons import ProfileConfig
from diffscope.tools.base import ToolContext
from diffscope.tools.common import artifacts, model_pair
from diffscope.tools.registry import tool

MAX_LINES = 8


class MethodOverview(BaseModel):
    """One method's top evidence from its cached artifact, or why there is none yet."""

    method: str = Field(description="the method (neurons, diffmining)")
    tool: str = Field(description="the tool that gives this method's full evidence")
    cached: bool = Field(description="whether the method's artifact is already cached")
    lines: list[str] = Field(description="a few lines of its top evidence (empty when uncached)")
    note: str | None = Field(None, description="why there is nothing to show, when there is not")


class Overview(BaseModel):
    """The top evidence of each method already cached for this pair."""

    methods: list[MethodOverview]


def _cached(arts: Artifacts, kind: str, *configs: Any) -> bool:
    """Whether an entry is in the cache (memory, or disk with a manifest that checks out)."""
    cache = arts.cache
    path = cache.path(kind, *configs)
    if str(path) in getattr(cache, "_memo", {}):
        return True
    return path.exists() and check_manifest(ArtifactCache.manifest_path(path)) is None


def _defaults(method: Any) -> dict[str, Any]:
    """The default keyword values of an Artifacts method (so the cache keys match its own)."""
    return {
        name: p.default
        for name, p in inspect.signature(method).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _uncached(method: str, tool_name: str) -> MethodOverview:
    return MethodOverview(
        method=method,
        tool=tool_name,
        cached=False,
        lines=[],
        note=f"not computed yet for this pair: call {tool_name} (the first call computes it)",
    )


def neurons_overview(arts: Artifacts, lines: int) -> MethodOverview:
    """The neurons with the largest rms activation gap, from the cached neuron profile."""
    if not _cached(arts, "neurons", ProfileConfig(intrinsic=True), arts.corpus):
        return _uncached("neurons", "top_neurons")
    profile = arts.neuron_profile()
    top = profile.top(lines, "rms", "total")
    shown = [
        f"L{s.layer}/N{s.neuron}: rms gap {s.rms:.2f}, mean gap {s.mean:+.2f}, "
        f"decorrelation {s.decorrelation:.2f}"
        for s in top
    ]
    if len(top) > 1:
        ratio = top[0].score / max(top[-1].score, 1e-9)
        shown.append(f"the top neuron's gap is {ratio:.1f}x the {len(top)}th's")
    return MethodOverview(method="neurons", tool="top_neurons", cached=True, lines=shown)


def mining_overview(arts: Artifacts, lines: int, special: set[int]) -> MethodOverview:
    """The most promoted and demoted tokens and the topics, from the cached diff mining."""
    settings = _defaults(Artifacts.diff_mining)
    key = {"positions": settings["positions"], "top_k": settings["top_k"]}
    key["topics"] = settings["n_topics"]
    if not _cached(arts, "mining", key, arts.corpus):
        return _uncached("diffmining", "top_promoted_tokens")
    mining = arts.diff_mining()
    up = [s for s in mining.promoted if s.token_id not in special][:lines]
    down = [s for s in mining.demoted if s.token_id not in special][: max(1, lines // 2)]
    shown = [
        "promoted: " + ", ".join(f"{s.token!r} ({s.occurrence:.2f})" for s in up),
        "demoted: " + ", ".join(f"{s.token!r} ({s.mean_diff:+.2f})" for s in down),
    ]
    for topic in mining.topics[:3]:
        words = [t.token for t in topic.tokens if t.token_id not in special][:6]
        shown.append(f"topic {topic.index} ({topic.weight:.2f}): {', '.join(map(repr, words))}")
    return MethodOverview(method="diffmining", tool="top_promoted_tokens", cached=True, lines=shown)


@tool(tags=("overview",), title="Overview of cached evidence")
def overview(
    ctx: ToolContext,
    lines: Annotated[
        int, Field(ge=1, le=MAX_LINES, description="entries per method (neurons, tokens)")
    ] = 5,
) -> Overview:
    """Where to look first: a few lines of top evidence from every method already cached.

    Reads only artifacts already computed for this pair (neuron gaps, promoted tokens and topics)
    and never computes one, so it answers at once; a method not computed yet says which tool to
    call for it.
    """
    pair = model_pair(ctx)
    arts = artifacts(ctx)
    special = set(pair.special_ids)
    return Overview(methods=[neurons_overview(arts, lines), mining_overview(arts, lines, special)])
