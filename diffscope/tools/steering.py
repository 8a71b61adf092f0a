"""Generation tools that push on the difference: `steer` (add a neuron's output direction, the mean
activation difference or a crosscoder latent to the residual stream and compare with unsteered
text) and `amplify` (sample from logits_ft + alpha (logits_ft - logits_base))."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from diffscope.diffing import steering as engine
from diffscope.models.pair import ModelPair
from diffscope.tools import compute
from diffscope.tools.base import Charge, ToolContext, ToolError
from diffscope.tools.common import (
    MAX_LAYER,
    MAX_NEURON,
    ChatArg,
    Prompt,
    SeedArg,
    TemperatureArg,
    Which,
    artifacts,
    check_layer,
    check_neuron,
    check_prompts,
    count_tokens,
    engine_errors,
    model_pair,
    use_chat,
)
from diffscope.tools.registry import tool

DEFAULT_PROMPTS = ("Once upon a time", "Today I want to tell you about", "The best thing is")
MAX_PROMPTS = 4
MEAN_DIFF_POSITIONS = 5
Kind = Literal["neuron", "mean_diff", "latent"]
PromptList = Annotated[
    list[Prompt] | None,
    Field(
        min_length=1,
        max_length=MAX_PROMPTS,
        description="prompts to continue (1 to 4; default: three neutral story openings)",
    ),
]


class SteeredText(BaseModel):
    """One prompt continued with and without the direction."""

    prompt: str
    steered: str
    unsteered: str


class SteerResult(BaseModel):
    """Generations with and without a direction added to the residual stream."""

    kind: Kind
    label: str = Field(description="what the direction is")
    model: Which = Field(description="the model that generated")
    layer: int = Field(description="layer after which the direction is added")
    strength: float
    resid_norm: float = Field(description="mean residual norm at the layer over the prompts")
    added_norm: float = Field(description="norm of the vector added at every position")
    chat: bool
    results: list[SteeredText]


class AmplifiedText(BaseModel):
    """Samples for one prompt."""

    prompt: str
    samples: list[str]


class AmplifyResult(BaseModel):
    """Samples from logits_ft + alpha (logits_ft - logits_base)."""

    alpha: float
    temperature: float
    chat: bool
    results: list[AmplifiedText]


def _prompts(prompts: list[str] | None) -> list[str]:
    return list(DEFAULT_PROMPTS if prompts is None else prompts)


def _steer_cost(args: Mapping[str, Any]) -> Charge:
    return Charge(model_queries=2 * len(_prompts(args["prompts"])))


def _amplify_cost(args: Mapping[str, Any]) -> Charge:
    return Charge(model_queries=len(_prompts(args["prompts"])) * args["n_samples"])


def _check_steer_cost(pair: ModelPair, counts: list[int], max_new_tokens: int) -> None:
    """Refuse a steer call estimated past the per-call limit, naming the tokens that fit."""

    def estimate(tokens: int) -> float:  # a norm pass, then unsteered and steered generation
        prompt = max(counts)
        return compute.forward_s(pair, len(counts) * prompt, models=1) + 2 * compute.generate_s(
            pair, len(counts), prompt, tokens
        )

    fits = compute.largest_fitting(lambda n: estimate(n) <= compute.CALL_LIMIT_S, max_new_tokens)
    smaller = (
        f"call again with max_new_tokens={fits}"
        if fits is not None
        else "call again with fewer or shorter prompts"
    )
    what = (
        f"{len(counts)} prompts of up to {max(counts)} tokens, {max_new_tokens} new tokens, twice"
    )
    compute.check_cost("steer", estimate(max_new_tokens), what, smaller)


def _check_amplify_cost(
    pair: ModelPair, counts: list[int], n_samples: int, max_new_tokens: int
) -> None:
    """Refuse an amplify call estimated past the per-call limit, naming a smaller one that fits:
    fewer tokens at the same samples, else fewer samples, else fewer or shorter prompts."""
    prompt = max(counts)

    def fits(samples: int, tokens: int) -> bool:
        rows = len(counts) * samples
        return compute.uncached_generate_s(pair, rows, prompt, tokens) <= compute.CALL_LIMIT_S

    estimate = compute.uncached_generate_s(pair, len(counts) * n_samples, prompt, max_new_tokens)
    if estimate <= compute.CALL_LIMIT_S:
        return
    tokens = compute.largest_fitting(lambda n: fits(n_samples, n), max_new_tokens)
    samples = compute.largest_fitting(lambda n: fits(n, max_new_tokens), n_samples)
    options = []
    if tokens is not None and tokens >= min(8, max_new_tokens):
        options.append(f"max_new_tokens={tokens} with n_samples={n_samples}")
    if samples is not None:
        options.append(f"n_samples={samples} with max_new_tokens={max_new_tokens}")
    if not options:
        one = compute.largest_fitting(lambda n: fits(1, n), max_new_tokens)
        if one is not None:
            options.append(f"n_samples=1 with max_new_tokens={one}")
    smaller = (
        "call again with " + " or ".join(options)
        if options
        else "call again with fewer or shorter prompts"
    )
    what = (
        f"{len(counts)} prompts x {n_samples} samples x {max_new_tokens} tokens, both models "
        f"rerun on the whole sequence of up to {prompt + max_new_tokens} tokens at every step"
    )
    compute.check_cost("amplify", estimate, what, smaller)


def _mean_diff_direction(ctx: ToolContext, layer: int) -> engine.Direction:
    with engine_errors():
        diff = artifacts(ctx).mean_diff(layer, MEAN_DIFF_POSITIONS)
    try:
        direction = engine.direction_from_mean_diff(diff, layer)
    except ValueError:
        direction = None
    if direction is None or direction.norm == 0.0:
        raise ToolError(
            f"the mean activation difference at layer {layer} is zero or undefined (the models "
            "do not differ there); try another layer or kind='neuron'"
        )
    return direction


def _latent_direction(ctx: ToolContext, latent: int | None, layer: int | None) -> engine.Direction:
    from diffscope.tools.crosscoder import find_crosscoder

    cc = find_crosscoder(ctx, layer)
    if latent is None:
        latent = cc.ft_candidates[0]
    if not 0 <= latent < cc.dict_size:
        raise ToolError(
            f"latent {latent} is out of range: this crosscoder has latents 0..{cc.dict_size - 1}"
        )
    with engine_errors():
        return cc.direction(latent, "finetuned")


@tool(tags=("steering",), cost=_steer_cost, idempotent=False, title="Steer")
def steer(
    ctx: ToolContext,
    prompts: PromptList = None,
    kind: Annotated[
        Kind,
        Field(
            description="neuron: a neuron's output weights (needs layer and neuron); mean_diff: "
            "the mean activation difference at layer; latent: a crosscoder latent's decoder"
        ),
    ] = "mean_diff",
    layer: Annotated[
        int | None,
        Field(ge=0, le=MAX_LAYER, description="layer to add the direction after (default: middle)"),
    ] = None,
    neuron: Annotated[
        int | None, Field(ge=0, le=MAX_NEURON, description="neuron index, for kind='neuron'")
    ] = None,
    latent: Annotated[
        int | None,
        Field(
            ge=0,
            le=2**24,
            description="crosscoder latent, for kind='latent' (default: the most ft-specific)",
        ),
    ] = None,
    strength: Annotated[
        float,
        Field(
            ge=-20.0,
            le=20.0,
            allow_inf_nan=False,
            description="multiple of the mean residual norm added along the unit direction",
        ),
    ] = 1.0,
    model: Annotated[
        Which, Field(description="model to steer (base: does the difference recreate the ft?)")
    ] = "base",
    max_new_tokens: Annotated[int, Field(ge=1, le=128, description="tokens to generate")] = 24,
    temperature: TemperatureArg = 0.0,
    seed: SeedArg = 0,
    chat: ChatArg = None,
) -> SteerResult:
    """Generate with a direction added to the residual stream, next to the unsteered generation.

    The direction (unit length) is scaled by `strength` times the mean residual norm at the layer
    and added at every position. Each prompt counts as two model queries (steered and unsteered).
    A call estimated to take more than about 20 s (many long prompts with many tokens on a large
    pair) is refused with the max_new_tokens that fits.
    """
    pair = model_pair(ctx)
    texts = _prompts(prompts)
    templated = use_chat(pair, chat)
    counts = check_prompts(pair, texts, chat=templated, reserve=max_new_tokens)
    _check_steer_cost(pair, counts, max_new_tokens)
    if kind == "neuron":
        if neuron is None or layer is None:
            raise ToolError("kind='neuron' needs both layer and neuron")
        check_layer(pair, layer)
        check_neuron(pair, neuron)
        with engine_errors():
            direction = engine.neuron_direction(pair, layer, neuron, which="finetuned")
    elif kind == "mean_diff":
        direction = _mean_diff_direction(ctx, check_layer(pair, layer))
    else:
        direction = _latent_direction(ctx, latent, layer)
    with engine_errors(hint="; pick another direction or layer"):
        got = engine.steer(
            pair,
            texts,
            direction,
            strength,
            which=model,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            chat=templated,
        )
    ctx.charge(tokens=count_tokens(pair, got.steered + got.unsteered), strict=False)
    return SteerResult(
        kind=kind,
        label=got.label,
        model=model,
        layer=got.layer,
        strength=got.strength,
        resid_norm=got.resid_norm,
        added_norm=got.added_norm,
        chat=templated,
        results=[
            SteeredText(prompt=p, steered=s, unsteered=u)
            for p, s, u in zip(texts, got.steered, got.unsteered, strict=True)
        ],
    )


@tool(tags=("amplification",), cost=_amplify_cost, idempotent=False, title="Amplify")
def amplify(
    ctx: ToolContext,
    prompts: PromptList = None,
    alpha: Annotated[
        float,
        Field(
            ge=-1.0,
            le=20.0,
            allow_inf_nan=False,
            description="0 samples the fine-tune; larger values exaggerate what it changed",
        ),
    ] = 2.0,
    n_samples: Annotated[int, Field(ge=1, le=4, description="samples per prompt")] = 2,
    max_new_tokens: Annotated[int, Field(ge=1, le=64, description="tokens per sample")] = 24,
    temperature: TemperatureArg = 1.0,
    seed: SeedArg = 0,
    chat: ChatArg = None,
) -> AmplifyResult:
    """Sample from logits_ft + alpha (logits_ft - logits_base) to exaggerate what the fine-tune changed.

    Each sample counts as one model query. Both models run on the whole sequence at every step, so
    the cost grows with prompts x samples x tokens x length: a call estimated to take more than
    about 20 s (on a real model: 4 samples of 64 tokens) is refused with the smaller n_samples or
    max_new_tokens that fits.
    """
    pair = model_pair(ctx)
    texts = _prompts(prompts)
    templated = use_chat(pair, chat)
    counts = check_prompts(pair, texts, chat=templated, reserve=max_new_tokens)
    _check_amplify_cost(pair, counts, n_samples, max_new_tokens)
    with engine_errors():
        got = engine.amplify(
            pair,
            texts,
            alpha=alpha,
            n_samples=n_samples,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            chat=templated,
        )
    ctx.charge(tokens=sum(count_tokens(pair, s) for s in got.samples), strict=False)
    return AmplifyResult(
        alpha=got.alpha,
        temperature=got.temperature,
        chat=templated,
        results=[
            AmplifiedText(prompt=p, samples=s) for p, s in zip(texts, got.samples, strict=True)
        ],
    )
