"""Crosscoder tools: `top_latents` (fine-tune-only, base-only or shared latents of the pair's trained
crosscoder, ranked, with latent-scaling nu values) and `latent_exemplars` (one latent's strongest
activations as marked-up text).

Training a crosscoder takes far longer than a tool call may, so these tools only serve one that was
trained ahead (`Artifacts.crosscoder()`, e.g. from `diffscope prepare`); without one they answer
with a ToolError saying so. `find_crosscoder` is also what `steer(kind="latent")` uses.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Literal, SupportsFloat

from pydantic import BaseModel, Field

from diffscope.diffing.crosscoder.activations import ShardedActivations
from diffscope.diffing.crosscoder.artifact import ANALYSIS_JSON, CrosscoderArtifact, load_artifact
from diffscope.diffing.crosscoder.pipeline import artifact_root
from diffscope.tools.base import ToolContext, ToolError
from diffscope.tools.common import (
    MAX_LAYER,
    artifacts,
    check_layer,
    engine_errors,
    model_pair,
)
from diffscope.tools.registry import tool

CACHE_KEY = "tools.crosscoder"
RETRAIN = "it is retrained ahead of serving (diffscope prepare), not during a call"
MAX_LATENT = 2**24
Side = Literal["finetuned", "base", "shared"]


def _finite(value: SupportsFloat) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _finished(root: Path, layer: int | None) -> list[Path]:
    """Finished crosscoder folders under `root` (at `layer` if given), newest first."""
    pattern = f"*-L{layer}-*/{ANALYSIS_JSON}" if layer is not None else f"*-L*-*/{ANALYSIS_JSON}"
    found = [path.parent for path in root.glob(pattern)]
    return sorted(found, key=lambda folder: (folder / ANALYSIS_JSON).stat().st_mtime, reverse=True)


def find_crosscoder(ctx: ToolContext, layer: int | None = None) -> CrosscoderArtifact:
    """The newest finished crosscoder of the pair (at `layer` if given), loaded once per context;
    a ToolError when none has been trained."""
    pair = model_pair(ctx)
    if layer is not None:
        check_layer(pair, layer)
    arts = artifacts(ctx)
    root = artifact_root(pair, arts.root)
    damaged = 0
    for folder in _finished(root, layer):
        cache: dict[str, CrosscoderArtifact] = ctx.cache.setdefault(CACHE_KEY, {})
        if str(folder) in cache:
            return cache[str(folder)]
        try:
            info = json.loads((folder / ANALYSIS_JSON).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            info = {}
        acts = root / str(info.get("acts", ""))
        if not acts.is_dir():
            continue
        bad_acts = arts.cache.check_folder("acts", acts)
        problem = bad_acts or arts.cache.check_folder("crosscoder", folder)
        if problem is None:
            try:
                artifact = load_artifact(folder, ShardedActivations(acts), pair.tokenizer)
            except Exception as exc:  # passes its checksums but cannot be read back
                problem = f"it cannot be read: {type(exc).__name__}: {exc}"
        if problem is not None:
            damaged += 1
            aside = [acts, folder] if bad_acts else [folder]
            arts.cache.reject("crosscoder", aside, problem, RETRAIN)
            continue
        cache[str(folder)] = artifact
        return artifact
    where = "" if layer is None else f" at layer {layer}"
    if damaged:
        raise ToolError(
            f"the crosscoder trained for this pair{where} was damaged on disk and has been set "
            f"aside; {RETRAIN}. Use the neuron, KL, diff-mining, lens, steering or amplification "
            "tools instead"
        )
    raise ToolError(
        f"no crosscoder has been trained for this pair{where}; crosscoders are trained ahead "
        "(diffscope prepare), not during a call. Use the neuron, KL, diff-mining, lens, steering "
        "or amplification tools instead"
    )


class LatentExemplar(BaseModel):
    """One strong activation of a latent: its context with the token marked [[like this]]."""

    text: str
    token: str
    word: str = Field(description="the word the token belongs to")
    value: float = Field(description="the latent's activation")


class LatentInfo(BaseModel):
    """One latent's decoder-norm class and latent-scaling fit."""

    latent: int
    label: str = Field(description="decoder-norm class: ft_only, base_only, shared or other")
    delta: float = Field(description="0.5 (1 + (|d_base| - |d_ft|) / max): 0 ft-only, 1 base-only")
    norm_base: float = Field(description="decoder norm for the base model")
    norm_finetuned: float = Field(description="decoder norm for the fine-tune")
    cosine: float | None = Field(description="cosine of the two decoder vectors")
    nu_reconstruction: float | None = Field(
        None, description="latent scaling nu on the reconstruction (near 0: really model-specific)"
    )
    nu_error: float | None = Field(None, description="latent scaling nu on the error target")
    specific: bool | None = Field(
        None, description="whether latent scaling confirms it (|nu| < 0.5 on both targets)"
    )
    exemplars: list[LatentExemplar] = Field(default_factory=list)


class CrosscoderFacts(BaseModel):
    """What crosscoder is being read."""

    layer: int
    loss: str
    dict_size: int
    steps: int
    fve_base: float | None = Field(description="fraction of variance explained, base")
    fve_finetuned: float | None = Field(description="fraction of variance explained, fine-tune")
    l0: float | None = Field(description="mean active latents per token")
    dead_fraction: float | None
    classes: dict[str, int] = Field(description="latents per decoder-norm class")


class TopLatents(BaseModel):
    """The crosscoder latents most specific to one side (or the most used shared ones)."""

    crosscoder: CrosscoderFacts
    side: Side
    latents: list[LatentInfo]


class LatentDetail(BaseModel):
    """One latent's class, latent scaling and strongest activations."""

    crosscoder: CrosscoderFacts
    info: LatentInfo


def _facts(cc: CrosscoderArtifact) -> CrosscoderFacts:
    summary = cc.summary()
    return CrosscoderFacts(
        layer=cc.layer,
        loss=cc.loss,
        dict_size=cc.dict_size,
        steps=int(summary["steps"]),
        fve_base=_finite(summary["fve_base"]),
        fve_finetuned=_finite(summary["fve_finetuned"]),
        l0=_finite(summary["l0"]),
        dead_fraction=_finite(summary["dead_fraction"]),
        classes=summary["classes"],
    )


def _info(cc: CrosscoderArtifact, latent: int, exemplars: int) -> LatentInfo:
    classes = cc.classes
    nu = cc.nu(latent)
    specific = None
    if nu is not None:
        side = "finetuned" if latent in cc.ft_candidates else "base"
        specific = latent in cc.specific(side)  # type: ignore[arg-type]
    with engine_errors():
        found = cc.exemplars(latent, exemplars) if exemplars else []
    return LatentInfo(
        latent=latent,
        label=classes.label(latent),
        delta=float(classes.delta[latent]),
        norm_base=float(classes.norm_base[latent]),
        norm_finetuned=float(classes.norm_ft[latent]),
        cosine=_finite(classes.cosine[latent]),
        nu_reconstruction=None if nu is None else _finite(nu[0]),
        nu_error=None if nu is None else _finite(nu[1]),
        specific=specific,
        exemplars=[
            LatentExemplar(text=e.text, token=e.token, word=e.word, value=e.value) for e in found
        ],
    )


def _check_latent(cc: CrosscoderArtifact, latent: int) -> None:
    if not 0 <= latent < cc.dict_size:
        raise ToolError(
            f"latent {latent} is out of range: this crosscoder has latents 0..{cc.dict_size - 1}"
        )


@tool(tags=("crosscoder",), title="Top crosscoder latents")
def top_latents(
    ctx: ToolContext,
    side: Annotated[
        Side,
        Field(
            description="finetuned: latents whose decoder lives mostly in the fine-tune; base: "
            "mostly in the base; shared: both, most often active first"
        ),
    ] = "finetuned",
    k: Annotated[int, Field(ge=1, le=64, description="latents to return")] = 10,
    exemplars: Annotated[
        int, Field(ge=0, le=3, description="strongest activations shown per latent")
    ] = 1,
    layer: Annotated[
        int | None,
        Field(ge=0, le=MAX_LAYER, description="crosscoder layer (default: the newest trained)"),
    ] = None,
) -> TopLatents:
    """Crosscoder latents most specific to the fine-tune (or base, or shared), with latent scaling nu.

    Fine-tune and base candidates are ranked by relative decoder norm (Delta); nu near 0 on both
    targets confirms a latent really belongs to one model rather than absorbing shared structure.
    """
    cc = find_crosscoder(ctx, layer)
    if side == "finetuned":
        chosen = cc.ft_candidates[:k]
    elif side == "base":
        chosen = cc.base_candidates[:k]
    else:
        shared = cc.classes.shared.nonzero().view(-1)
        fired = cc.metrics.fired.double()[shared] if cc.metrics.fired.numel() else None
        order = shared if fired is None else shared[fired.argsort(descending=True, stable=True)]
        chosen = order[:k].tolist()
    return TopLatents(
        crosscoder=_facts(cc),
        side=side,
        latents=[_info(cc, int(j), exemplars) for j in chosen],
    )


@tool(tags=("crosscoder",), title="Latent exemplars")
def latent_exemplars(
    ctx: ToolContext,
    latent: Annotated[
        int | None,
        Field(
            ge=0,
            le=MAX_LATENT,
            description="latent index (default: the most fine-tune-specific latent)",
        ),
    ] = None,
    k: Annotated[int, Field(ge=1, le=20, description="activations to return")] = 5,
    layer: Annotated[
        int | None,
        Field(ge=0, le=MAX_LAYER, description="crosscoder layer (default: the newest trained)"),
    ] = None,
) -> LatentDetail:
    """One crosscoder latent's class, latent scaling and strongest activations as marked-up text."""
    cc = find_crosscoder(ctx, layer)
    if latent is None:
        latent = cc.ft_candidates[0]
    _check_latent(cc, latent)
    return LatentDetail(crosscoder=_facts(cc), info=_info(cc, latent, k))
