"""`difference_lens`: read the mean activation difference (h_ft - h_base) at a layer as tokens, per
early position, through the logit lens of +/- the difference and optionally through patchscope."""

from __future__ import annotations

import math
from typing import Annotated

import torch
from pydantic import BaseModel, Field

from diffscope.diffing import lens as engine
from diffscope.diffing.lens import LensToken
from diffscope.tools.base import ToolContext
from diffscope.tools.common import (
    MAX_LAYER,
    Which,
    artifacts,
    check_layer,
    engine_errors,
    model_pair,
)
from diffscope.tools.registry import tool

POSITIONS = 5


class ScaleReading(BaseModel):
    """What the patched identity prompts predict at one scale of the difference."""

    scale: float
    common: list[str] = Field(description="tokens in every identity prompt's top k")
    consistency: float = Field(description="share of the top k common to all prompts")


class PatchscopeReading(BaseModel):
    """Patchscope of the difference at one position over scales."""

    best_scale: float
    best_tokens: list[str] = Field(description="the common tokens at the best scale")
    scales: list[ScaleReading]


class PositionLens(BaseModel):
    """The mean difference at one early position, read as tokens."""

    position: int = Field(description="token position in a corpus window (0 = first token)")
    norm: float = Field(description="L2 norm of the mean difference")
    positive: list[LensToken] = Field(description="top tokens of +difference (what ft adds)")
    negative: list[LensToken] = Field(description="top tokens of -difference (what ft removes)")
    patchscope: PatchscopeReading | None = None


class DifferenceLens(BaseModel):
    """Mean (h_ft - h_base) after a layer over the probe corpus, per early position, as tokens."""

    layer: int
    n_layers: int
    unembedding: Which = Field(description="whose final norm and unembedding read the vectors")
    positions: list[PositionLens]
    skipped: list[int] = Field(
        default_factory=list, description="positions no corpus window reaches"
    )


@tool(tags=("lens",), title="Activation-difference lens")
def difference_lens(
    ctx: ToolContext,
    layer: Annotated[
        int | None, Field(ge=0, le=MAX_LAYER, description="layer to read (default: the middle)")
    ] = None,
    position: Annotated[
        int | None,
        Field(ge=0, le=POSITIONS - 1, description="one early position 0..4 (default: all five)"),
    ] = None,
    k: Annotated[int, Field(ge=1, le=50, description="tokens per direction")] = 10,
    patchscope: Annotated[
        bool,
        Field(description="also patch the difference into identity prompts at several scales"),
    ] = False,
    model: Annotated[
        Which, Field(description="model whose unembedding (and patchscope) reads the difference")
    ] = "finetuned",
) -> DifferenceLens:
    """Logit lens (and optionally patchscope) of the mean activation difference at a layer.

    The mean of h_ft - h_base after block `layer` is taken over the probe corpus at each of the
    first five token positions, where fine-tunes often write their change most plainly. Each is
    read as the top tokens of +diff and -diff through the final norm and unembedding.
    """
    pair = model_pair(ctx)
    layer = check_layer(pair, layer)
    with engine_errors():
        diff = artifacts(ctx).mean_diff(layer, POSITIONS)
    wanted = range(POSITIONS) if position is None else [position]
    readings: list[PositionLens] = []
    skipped: list[int] = []
    for pos in wanted:
        vector = diff[pos]
        if not bool(torch.isfinite(vector).all()):
            skipped.append(pos)
            continue
        with engine_errors():
            lens = engine.logit_lens(pair, vector, k, which=model)
        scope = None
        if patchscope and math.isfinite(lens.norm) and lens.norm > 0:
            with engine_errors():
                got = engine.patchscope(pair, vector, layer, k=k, which=model)
            scope = PatchscopeReading(
                best_scale=got.best_scale,
                best_tokens=got.best_tokens,
                scales=[
                    ScaleReading(scale=s.scale, common=s.common, consistency=s.consistency)
                    for s in got.scales
                ],
            )
        readings.append(
            PositionLens(
                position=pos,
                norm=lens.norm,
                positive=lens.positive,
                negative=lens.negative,
                patchscope=scope,
            )
        )
    return DifferenceLens(
        layer=layer,
        n_layers=pair.n_layers,
        unembedding=model,
        positions=readings,
        skipped=skipped,
    )
