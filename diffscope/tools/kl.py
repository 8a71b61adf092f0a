"""`kl_probe`: where the fine-tune's next-token distribution departs most from the base model's,
on the caller's prompts or on a slice of the pair's probe corpus, with an optional per-token plot.

The default call (the corpus, DEFAULT_WINDOWS windows) is the first thing an investigator asks,
so its answer is a prepared artifact: the server's background preparation computes it right after
the probe corpus windows (`prepare_default_probe`; the key `kl_probe` in
`diffscope.server.prepare`) and a cold call answers "preparing" within seconds instead of running
both models while the client waits. Corpus probes are memoised per context (the windows and the
pair never change under it), so a repeated call answers at once. Any other call runs at once,
refused when its estimated cost (`diffscope.tools.compute`) passes the per-call limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from diffscope.diffing import kl as engine
from diffscope.diffing.kl import KLPosition
from diffscope.models.batching import left_pad
from diffscope.models.pair import ModelPair
from diffscope.tools import compute
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
DEFAULT_WINDOWS = 16
DEFAULT_K = 8
DEFAULT_TOP_TOKENS = 5
MEMO_KEY = "tools.kl_probe.memo"
MEMO_SIZE = 8


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


def _memo(ctx: ToolContext) -> dict[tuple[Any, ...], Any]:
    memo = ctx.cache.get(MEMO_KEY)
    if not isinstance(memo, dict):
        memo = ctx.cache[MEMO_KEY] = {}
    return memo


def _remember(ctx: ToolContext, key: tuple[Any, ...], value: Any) -> Any:
    memo = _memo(ctx)
    memo[key] = value
    while len(memo) > MEMO_SIZE:  # oldest first (dicts keep insertion order)
        memo.pop(next(iter(memo)))
    return value


def corpus_probe(ctx: ToolContext, n_windows: int, k: int, top_tokens: int) -> engine.KLProbe:
    """The KL probe of the first `n_windows` probe-corpus windows (memoised per context)."""
    key = ("probe", n_windows, k, top_tokens)
    found = _memo(ctx).get(key)
    if isinstance(found, engine.KLProbe):
        return found
    pair = model_pair(ctx)
    with engine_errors():
        windows = artifacts(ctx).windows()[:n_windows]
    lengths = [int(windows.shape[1])] * int(windows.shape[0])
    _check_cost(pair, lengths, "call again with n_windows={}")
    with engine_errors():
        probe = engine.kl_probe(
            pair, windows, k=k, top_tokens=top_tokens, chat=False, progress=ctx.progress
        )
    return _remember(ctx, key, probe)


def _corpus_plot(ctx: ToolContext) -> tuple[Image, int]:
    """The plot of the first corpus window (memoised) and how many tokens it shows."""
    found = _memo(ctx).get(("plot",))
    if found is not None:
        return found
    pair = model_pair(ctx)
    with engine_errors():
        first = artifacts(ctx).windows()[0].tolist()
    return _remember(ctx, ("plot",), (_plot(pair, first), min(len(first), PLOT_TOKENS)))


def prepare_default_probe(ctx: ToolContext) -> None:
    """Compute the default call's answer ahead (the server's background preparation)."""
    corpus_probe(ctx, DEFAULT_WINDOWS, DEFAULT_K, DEFAULT_TOP_TOKENS)
    _corpus_plot(ctx)


def is_default_corpus_call(args: Mapping[str, Any]) -> bool:
    """Whether a call's (validated or raw) arguments ask for the prepared default probe."""
    return (
        args.get("prompts") is None
        and args.get("n_windows", DEFAULT_WINDOWS) == DEFAULT_WINDOWS
        and args.get("k", DEFAULT_K) == DEFAULT_K
        and args.get("top_tokens", DEFAULT_TOP_TOKENS) == DEFAULT_TOP_TOKENS
    )


def _check_cost(pair: ModelPair, lengths: list[int], suggest: str) -> None:
    """Refuse a probe estimated past the per-call limit: both models' forward over every token
    (batches of 8, padded to their longest) and the plot's."""

    def estimate(n: int) -> float:
        rows = lengths[:n]
        padded = sum(max(rows[i : i + 8]) * len(rows[i : i + 8]) for i in range(0, len(rows), 8))
        return compute.forward_s(pair, padded + min(rows[0], PLOT_TOKENS))

    fits = compute.largest_fitting(lambda n: estimate(n) <= compute.CALL_LIMIT_S, len(lengths))
    smaller = suggest.format(fits) if fits is not None else "call again with shorter prompts"
    what = f"{len(lengths)} samples, {sum(lengths)} tokens through both models"
    compute.check_cost("kl_probe", estimate(len(lengths)), what, smaller)


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
    ] = DEFAULT_WINDOWS,
    k: Annotated[int, Field(ge=1, le=50, description="highest-KL positions to return")] = DEFAULT_K,
    top_tokens: Annotated[
        int, Field(ge=1, le=20, description="moved tokens shown per position, up and down")
    ] = DEFAULT_TOP_TOKENS,
    chat: ChatArg = None,
    plot: Annotated[
        bool, Field(description="attach a bar plot of KL per token of the first sample")
    ] = True,
) -> tuple[KLProbeResult, list[Image]]:
    """Per-token KL(finetuned || base) on prompts or corpus windows; the positions that changed most.

    Each top position gives its context, the next token, both models' favourite next token and the
    tokens whose probability rose and fell most. Prompts count as model queries; corpus windows
    are free. The default call (16 corpus windows) is prepared by the server in the background:
    while it is computed the call answers "preparing"; after that it answers at once. Other calls
    run at once; one estimated past about 20 s (many long prompts on a large pair) is refused
    with the n_windows or number of prompts that fits.
    """
    pair = model_pair(ctx)
    images: list[Image] = []
    plotted = None
    if prompts is None:
        probe = corpus_probe(ctx, n_windows, k, top_tokens)
        if plot:
            image, shown = _corpus_plot(ctx)
            images.append(image)
            plotted = f"KL per token over the first {shown} tokens of sample 0"
        return KLProbeResult(source="corpus", plotted=plotted, **probe.model_dump()), images
    templated = use_chat(pair, chat)
    counts = check_prompts(pair, prompts, chat=templated)
    _check_cost(pair, counts, "call again with the first {} prompts (or shorter ones)")
    with engine_errors():
        probe = engine.kl_probe(
            pair,
            prompts,
            k=k,
            top_tokens=top_tokens,
            chat=templated,
            progress=ctx.progress,
        )
    if plot:
        first = pair.token_ids(pair.format_prompt(prompts[0], templated))
        images.append(_plot(pair, first))
        shown = min(len(first), PLOT_TOKENS)
        plotted = f"KL per token over the first {shown} tokens of sample 0"
    return KLProbeResult(source="prompts", plotted=plotted, **probe.model_dump()), images
