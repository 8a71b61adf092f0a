"""`kl_probe`: where the fine-tune's next-token distribution departs most from the base model's,
on the caller's prompts or on a slice of the pair's probe corpus, with an optional per-token plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, cast

import torch
from pydantic import BaseModel, Field

from diffscope.diffing import kl as engine
from diffscope.diffing.kl import KLPosition
from diffscope.models.batching import Inputs, left_pad
from diffscope.models.pair import ModelPair
from diffscope.tools.base import Charge, Image, ToolContext
from diffscope.tools.common import (
    ChatArg,
    Prompt,
    artifacts,
    check_prompts,
    engine_errors,
    model_pair,
    use_chat,
)
from diffscope.tools.registry import tool

MAX_PROMPTS = 16
MAX_WINDOWS = 64
PLOT_TOKENS = 64


class KLProbeResult(BaseModel):
    """KL(finetuned || base) of the next-token distributions, per token, in nats."""

    source: Literal["prompts", "corpus"] = Field(
        description="whether the caller's prompts or corpus windows were probed"
    )
    n_samples: int
    n_tokens: int
    mean: float
    median: float
    max: float
    per_sample_mean: list[float] = Field(description="mean KL of each prompt or window")
    top: list[KLPosition] = Field(description="the highest-KL positions, highest first")
    plotted: str | None = Field(
        None, description="what the attached image shows (KL per token of the first sample)"
    )


def _plot(pair: ModelPair, row: Sequence[int]) -> Image:
    """A bar plot of KL per token of one sample (at most its first PLOT_TOKENS tokens)."""
    from matplotlib.figure import Figure

    row = list(row)[:PLOT_TOKENS]
    values = engine.kl_per_token(pair, left_pad([row], pair.pad_id, pair.device))[0].tolist()
    labels = [repr(pair.token_str(t))[1:-1][:12] for t in row]
    fig = Figure(figsize=(max(6.0, 0.22 * len(row)), 3.2))
    ax = fig.add_subplot()
    ax.bar(range(len(values)), values, color="#c0392b")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_ylabel("KL(ft || base) of next token (nats)")
    ax.set_xlim(-0.6, len(values) - 0.4)
    fig.tight_layout()
    return Image.from_figure(fig, dpi=90)


def _cost(args: Mapping[str, Any]) -> Charge:
    return Charge(model_queries=len(args["prompts"] or []))


@tool(tags=("kl",), cost=_cost, title="KL probe")
def kl_probe(
    ctx: ToolContext,
    prompts: Annotated[
        list[Prompt] | None,
        Field(
            min_length=1,
            max_length=MAX_PROMPTS,
            description="texts to probe (1 to 16); omit to probe windows of the probe corpus",
        ),
    ] = None,
    n_windows: Annotated[
        int,
        Field(ge=1, le=MAX_WINDOWS, description="corpus windows to probe when prompts is omitted"),
    ] = 16,
    k: Annotated[int, Field(ge=1, le=50, description="highest-KL positions to return")] = 8,
    top_tokens: Annotated[
        int, Field(ge=1, le=20, description="moved tokens shown per position, up and down")
    ] = 5,
    chat: ChatArg = None,
    plot: Annotated[
        bool, Field(description="attach a bar plot of KL per token of the first sample")
    ] = True,
) -> tuple[KLProbeResult, list[Image]]:
    """Per-token KL(finetuned || base) on prompts or corpus windows; the positions that changed most.

    Each top position gives its context, the next token, both models' favourite next token and the
    tokens whose probability rose and fell most. Prompts count as model queries; corpus windows
    are free.
    """
    pair = model_pair(ctx)
    if prompts is not None:
        templated = use_chat(pair, chat)
        check_prompts(pair, prompts, chat=templated)
        inputs: Inputs = prompts
    else:
        templated = False
        with engine_errors():
            inputs = artifacts(ctx).windows()[:n_windows]
    with engine_errors():
        probe = engine.kl_probe(
            pair,
            inputs,
            k=k,
            top_tokens=top_tokens,
            chat=templated,
            progress=ctx.progress,
        )
    images: list[Image] = []
    plotted = None
    if plot:
        if prompts is not None:
            text = pair.format_prompt(prompts[0], templated)
            first = pair.token_ids(text)
        else:
            first = cast(torch.Tensor, inputs)[0].tolist()  # corpus windows [N, T]
        images.append(_plot(pair, first))
        shown = min(len(first), PLOT_TOKENS)
        plotted = f"KL per token over the first {shown} tokens of sample 0"
    result = KLProbeResult(
        source="prompts" if prompts is not None else "corpus",
        plotted=plotted,
        **probe.model_dump(),
    )
    return result, images
