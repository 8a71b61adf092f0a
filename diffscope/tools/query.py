"""`query_models`: send prompts to the base model, the fine-tune or both and read the completions.

The only tool of the blackbox profile, and part of every other profile.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, Field

from diffscope.tools import compute
from diffscope.tools.base import Charge, ToolContext
from diffscope.tools.common import (
    ChatArg,
    ModelChoice,
    Prompt,
    SeedArg,
    TemperatureArg,
    check_prompts,
    count_tokens,
    engine_errors,
    model_pair,
    use_chat,
)
from diffscope.tools.registry import QUERY_TOOL, tool

MAX_PROMPTS = 8
MAX_NEW_TOKENS = 128


class Answer(BaseModel):
    """One prompt and what each asked model wrote after it."""

    prompt: str
    base: str | None = Field(None, description="the base model's completion (if asked)")
    finetuned: str | None = Field(None, description="the fine-tune's completion (if asked)")


class QueryResult(BaseModel):
    """Completions of the prompts, one entry per prompt."""

    model: ModelChoice
    chat: bool = Field(description="whether the prompts were wrapped in the chat template")
    max_new_tokens: int
    temperature: float
    seed: int
    answers: list[Answer]


def _models(model: ModelChoice) -> tuple[str, ...]:
    return ("base", "finetuned") if model == "both" else (model,)


def _cost(args: Mapping[str, Any]) -> Charge:
    return Charge(model_queries=len(args["prompts"]) * len(_models(args["model"])))


@tool(QUERY_TOOL, cost=_cost, idempotent=False, title="Query the models")
def query_models(
    ctx: ToolContext,
    prompts: Annotated[
        list[Prompt],
        Field(min_length=1, max_length=MAX_PROMPTS, description="prompts to send (1 to 8)"),
    ],
    model: Annotated[
        ModelChoice, Field(description="which model answers: base, finetuned or both")
    ] = "both",
    max_new_tokens: Annotated[
        int, Field(ge=1, le=MAX_NEW_TOKENS, description="tokens to generate per completion")
    ] = 32,
    temperature: TemperatureArg = 0.0,
    seed: SeedArg = 0,
    chat: ChatArg = None,
) -> QueryResult:
    """Send prompts to the base model, the fine-tune or both and return each completion.

    Each prompt sent to each model counts as one model query against the budget. With temperature
    0 the completions are greedy (the same every call); otherwise `seed` fixes the sample. A call
    estimated to take more than about 20 s (many long prompts with many tokens on a large pair) is
    refused with the max_new_tokens that fits.
    """
    pair = model_pair(ctx)
    templated = use_chat(pair, chat)
    counts = check_prompts(pair, prompts, chat=templated, reserve=max_new_tokens)
    models = len(_models(model))

    def estimate(tokens: int) -> float:
        return compute.generate_s(pair, len(prompts), max(counts), tokens, models=models)

    fits = compute.largest_fitting(lambda n: estimate(n) <= compute.CALL_LIMIT_S, max_new_tokens)
    options = [f"max_new_tokens={fits}"] if fits is not None else []
    if models == 2:
        options.append("model='base' and model='finetuned' in two calls")
    compute.check_cost(
        "query_models",
        estimate(max_new_tokens),
        f"{len(prompts)} prompts of up to {max(counts)} tokens, {max_new_tokens} new tokens, "
        f"{models} model{'s' if models > 1 else ''}",
        "call again with " + " or ".join(options) if options else "send fewer or shorter prompts",
    )
    out: dict[str, list[str]] = {}
    for which in _models(model):
        with engine_errors():
            out[which] = pair.generate(
                which,  # type: ignore[arg-type]
                prompts,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                seed=seed,
                chat=templated,
            )
    ctx.charge(tokens=sum(count_tokens(pair, texts) for texts in out.values()), strict=False)
    answers = [
        Answer(
            prompt=prompt,
            base=out["base"][i] if "base" in out else None,
            finetuned=out["finetuned"][i] if "finetuned" in out else None,
        )
        for i, prompt in enumerate(prompts)
    ]
    return QueryResult(
        model=model,
        chat=templated,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
        answers=answers,
    )
