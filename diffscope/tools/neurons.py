"""Neuron tools over the cached activation-gap profile: `top_neurons` (the MLP neurons whose
activations the fine-tune changed most), `neuron_exemplars` (one neuron's statistics and the
corpus snippets where its gap peaked) and `neuron_clusters` (top-gap neurons grouped by how their
gaps co-vary, with shared tokens and peak contexts)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from diffscope.diffing.neurons import METRICS, NeuronProfile, NeuronStat
from diffscope.models.pair import ModelPair
from diffscope.tools.base import ToolContext, ToolError
from diffscope.tools.common import (
    MAX_LAYER,
    MAX_NEURON,
    NeuronExemplar,
    artifacts,
    check_layer,
    check_neuron,
    engine_errors,
    model_pair,
)
from diffscope.tools.registry import tool

Metric = Literal["rms", "mean", "tail", "decorrelation", "output"]
Mode = Literal["total", "intrinsic"]
METRIC_HELP = (
    "gap statistic to rank by: rms (typical size of a_ft - a_base), mean (signed shift, ranked by "
    "size), tail (99.9th percentile of |gap|), decorrelation (1 - corr(a_base, a_ft)), output "
    "(rms weighted by the neuron's output-weight norm); all but decorrelation in pooled-std units"
)
MODE_HELP = (
    "total: the fine-tune as a whole; intrinsic: the fine-tuned MLP on the base model's residual "
    "input (changes made in this layer itself)"
)
LayerIndex = Annotated[int, Field(ge=0, le=MAX_LAYER)]


class NeuronInfo(BaseModel):
    """One neuron's gap statistics in one mode (gaps are a_ft - a_base over the probe corpus)."""

    layer: int
    neuron: int
    rank: int = Field(0, description="1-based rank under the requested metric (0: not ranked)")
    score: float = Field(0.0, description="the ranking score")
    rms: float
    mean: float
    tail: float
    decorrelation: float
    output: float
    base_mean: float = Field(description="mean activation in the base model")
    finetuned_mean: float = Field(description="mean activation in the fine-tune")
    exemplars: list[NeuronExemplar] = Field(default_factory=list)


class TopNeurons(BaseModel):
    """The neurons whose activations the fine-tune changed most."""

    metric: Metric
    mode: Mode
    n_layers: int
    n_neurons: int = Field(description="MLP neurons per layer")
    n_tokens: int = Field(description="corpus tokens the profile was computed on")
    neurons: list[NeuronInfo]


class NeuronDetail(BaseModel):
    """One neuron: its statistics in each profiled mode, its rank, and its peak-gap exemplars."""

    layer: int
    neuron: int
    rank_rms: int = Field(description="rank among all neurons by total rms gap (1 = largest)")
    total: NeuronInfo
    intrinsic: NeuronInfo | None = Field(None, description="statistics in intrinsic mode")
    exemplars: list[NeuronExemplar] = Field(description="corpus snippets where the gap peaked")


class NeuronRef(BaseModel):
    """A neuron's address."""

    layer: int
    neuron: int


class TokenCount(BaseModel):
    """A token and how often it appears at the cluster's peaks and exemplars."""

    token: str
    count: int


class ClusterInfo(BaseModel):
    """Neurons whose gaps rise and fall together over the probe set."""

    index: int
    label: str = Field(description="the cluster's most shared tokens")
    size: int
    neurons: list[NeuronRef]
    shared_tokens: list[TokenCount]
    peak_contexts: list[str] = Field(description="probe snippets where the cluster's gap peaks")
    mean_score: float = Field(description="mean ranking score of the members")
    coherence: float = Field(description="mean cosine similarity of members' gap profiles")


class NeuronClusters(BaseModel):
    """Clusters of the top-gap neurons, strongest first."""

    metric: Metric
    mode: Mode
    n_neurons: int = Field(description="top neurons clustered")
    clusters: list[ClusterInfo]
    note: str | None = Field(None, description="why there are no clusters, when there are none")


def _profile(ctx: ToolContext) -> NeuronProfile:
    with engine_errors():
        return artifacts(ctx).neuron_profile()


def _check_mode(profile: NeuronProfile, mode: str) -> None:
    if mode not in profile.metrics:
        raise ToolError(
            f"mode {mode!r} was not profiled for this pair; use one of: {', '.join(profile.modes)}"
        )


def _exemplars(pair: ModelPair, profile: NeuronProfile, layer: int, neuron: int, k: int):
    return [
        NeuronExemplar(
            text=ex.text,
            token=ex.token,
            gap=ex.value,
            base_activation=ex.base_activation,
            finetuned_activation=ex.finetuned_activation,
        )
        for ex in profile.exemplars(layer, neuron, pair.tokenizer, k=k)
    ]


def _info(stat: NeuronStat, exemplars: list[NeuronExemplar] | None = None) -> NeuronInfo:
    return NeuronInfo(
        layer=stat.layer,
        neuron=stat.neuron,
        rank=stat.rank,
        score=stat.score,
        **{name: getattr(stat, name) for name in METRICS},
        base_mean=stat.base_mean,
        finetuned_mean=stat.finetuned_mean,
        exemplars=exemplars or [],
    )


@tool(tags=("neurons",), title="Top neurons")
def top_neurons(
    ctx: ToolContext,
    k: Annotated[int, Field(ge=1, le=50, description="neurons to return")] = 10,
    metric: Annotated[Metric, Field(description=METRIC_HELP)] = "rms",
    mode: Annotated[Mode, Field(description=MODE_HELP)] = "total",
    layers: Annotated[
        list[LayerIndex] | None,
        Field(min_length=1, max_length=64, description="only these layers (default: all)"),
    ] = None,
    exemplars: Annotated[
        int, Field(ge=0, le=3, description="peak-gap snippets shown per neuron")
    ] = 2,
) -> TopNeurons:
    """The MLP neurons whose activations the fine-tune changed most, with stats and short exemplars.

    Gaps a_ft - a_base are measured on identical corpus tokens and normalised by the neuron's
    pooled activation std. Computed once per pair, then served from the cache.
    """
    pair = model_pair(ctx)
    if layers is not None:
        for layer in layers:
            check_layer(pair, layer, name="layers entry")
    profile = _profile(ctx)
    _check_mode(profile, mode)
    with engine_errors():
        stats = profile.top(k, metric, mode, layers)
    return TopNeurons(
        metric=metric,
        mode=mode,
        n_layers=profile.n_layers,
        n_neurons=profile.n_neurons,
        n_tokens=profile.n_tokens,
        neurons=[
            _info(s, _exemplars(pair, profile, s.layer, s.neuron, exemplars) if exemplars else [])
            for s in stats
        ],
    )


@tool(tags=("neurons",), title="Neuron exemplars")
def neuron_exemplars(
    ctx: ToolContext,
    layer: Annotated[
        int | None,
        Field(ge=0, le=MAX_LAYER, description="the neuron's layer (default: the top neuron's)"),
    ] = None,
    neuron: Annotated[
        int | None,
        Field(
            ge=0,
            le=MAX_NEURON,
            description="the neuron's index in its layer (default: the layer's top rms neuron)",
        ),
    ] = None,
    k: Annotated[int, Field(ge=1, le=16, description="exemplars to return")] = 5,
) -> NeuronDetail:
    """One neuron's gap statistics and the corpus snippets where its gap peaked ([[peak token]]).

    Each exemplar gives both models' activations at the peak token. Without `neuron`, the neuron
    with the largest rms gap (in `layer`, if given) is shown.
    """
    pair = model_pair(ctx)
    if layer is not None:
        check_layer(pair, layer)
    if neuron is not None:
        if layer is None:
            raise ToolError("give the neuron's layer too (neuron indices restart in every layer)")
        check_neuron(pair, neuron)
    profile = _profile(ctx)
    if neuron is None:
        best = profile.top(1, "rms", "total", None if layer is None else [layer])
        layer, neuron = best[0].layer, best[0].neuron
    assert layer is not None
    with engine_errors():
        total = profile.stat(layer, neuron, "total")
        intrinsic = (
            profile.stat(layer, neuron, "intrinsic") if "intrinsic" in profile.modes else None
        )
        rank = profile.ranks_of([(layer, neuron)], "rms", "total")[0]
    total.rank, total.score = rank, total.rms
    return NeuronDetail(
        layer=layer,
        neuron=neuron,
        rank_rms=rank,
        total=_info(total),
        intrinsic=None if intrinsic is None else _info(intrinsic),
        exemplars=_exemplars(pair, profile, layer, neuron, k),
    )


@tool(tags=("neurons",), title="Neuron clusters")
def neuron_clusters(
    ctx: ToolContext,
    top: Annotated[int, Field(ge=4, le=128, description="top-gap neurons to cluster")] = 48,
    n_clusters: Annotated[
        int | None, Field(ge=1, le=16, description="number of clusters (default: automatic)")
    ] = None,
    metric: Annotated[Metric, Field(description=METRIC_HELP)] = "rms",
    mode: Annotated[Mode, Field(description=MODE_HELP)] = "total",
) -> NeuronClusters:
    """Clusters of the top-gap neurons, each with a label, shared tokens and peak contexts.

    Neurons are grouped by the cosine similarity of their gap profiles over a probe slice of the
    corpus, so a cluster is a set of neurons that respond to the same change; clusters come
    strongest first (mean score times size).
    """
    profile = _profile(ctx)
    _check_mode(profile, mode)
    with engine_errors():
        found = artifacts(ctx).clusters(top=top, n_clusters=n_clusters, metric=metric, mode=mode)
    return NeuronClusters(
        metric=metric,
        mode=mode,
        n_neurons=sum(len(c.neurons) for c in found),
        clusters=[
            ClusterInfo(
                index=c.index,
                label=c.label,
                size=len(c.neurons),
                neurons=[NeuronRef(layer=la, neuron=n) for la, n in c.neurons],
                shared_tokens=[TokenCount(token=t, count=n) for t, n in c.shared_tokens],
                peak_contexts=c.peak_contexts,
                mean_score=c.mean_score,
                coherence=c.coherence,
            )
            for c in found
        ],
        note=None if found else "no neuron's gap differs from zero: there is nothing to cluster",
    )
