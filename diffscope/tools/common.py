"""What the tool modules share: the loaded pair and its cached artifacts, argument checks that say
what to fix, and the conversion of the engine's ValueErrors into ToolErrors.

The object a server loads (what `ToolContext.pair` returns) may be a `ModelPair`, an `Artifacts`
(whose corpus spec then decides what the cached artifacts are computed on), or any holder with an
`artifacts` attribute. `model_pair(ctx)` and `artifacts(ctx)` give the two views; the `Artifacts`
is created once per context and reports first-use computation through `ctx.progress`, which the
server turns into MCP progress notifications.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, Field, ValidationError

from diffscope.diffing.artifacts import Artifacts
from diffscope.models.pair import ModelPair
from diffscope.tools.base import ToolContext, ToolError

ARTIFACTS_KEY = "tools.artifacts"
MAX_PROMPT_CHARS = 8000
MAX_LAYER = 4095
MAX_NEURON = 2**20

Prompt = Annotated[
    str, Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="a non-empty prompt")
]
Which = Literal["base", "finetuned"]
SeedArg = Annotated[int, Field(ge=0, le=2**31 - 1, description="sampling seed")]
TemperatureArg = Annotated[
    float, Field(ge=0.0, le=2.0, allow_inf_nan=False, description="0 is greedy; higher samples")
]
ChatArg = Annotated[
    bool | None,
    Field(description="wrap prompts in the chat template (default: when the pair is chat)"),
]
ModelChoice = Literal["base", "finetuned", "both"]


def _holder_artifacts(obj: Any) -> Artifacts | None:
    if isinstance(obj, Artifacts):
        return obj
    found = getattr(obj, "artifacts", None)
    return found if isinstance(found, Artifacts) else None


def model_pair(ctx: ToolContext) -> ModelPair:
    """The loaded base/fine-tune pair, whatever form the server loaded it in."""
    obj = ctx.pair
    if isinstance(obj, ModelPair):
        return obj
    held = _holder_artifacts(obj)
    if held is not None:
        return held.pair
    pair = getattr(obj, "pair", None)
    if isinstance(pair, ModelPair):
        return pair
    raise ToolError(
        f"this server holds a {type(obj).__name__}, not a model pair; "
        "the diffing tools cannot run in this session"
    )


def artifacts(ctx: ToolContext) -> Artifacts:
    """The pair's cached artifacts, created and memoised in `ctx.cache` on first use.

    First-use computation (neuron profile, diff mining, mean differences) reports progress through
    `ctx.progress` as well as through any callback the Artifacts already had.
    """
    arts = ctx.cache.get(ARTIFACTS_KEY)
    if isinstance(arts, Artifacts):
        return arts
    arts = _holder_artifacts(ctx.pair) or Artifacts(model_pair(ctx))
    previous = arts.progress

    def report(fraction: float, message: str) -> None:
        if previous is not None:
            previous(fraction, message)
        ctx.progress(fraction, message)

    arts.progress = report
    arts.on_warning = ctx.warn  # a damaged cache entry rebuilt: a warning line in the answer
    ctx.cache[ARTIFACTS_KEY] = arts
    return arts


@contextmanager
def engine_errors(hint: str = "") -> Iterator[None]:
    """Turn the engine's ValueErrors (bad layer, empty text, text over the context) into ToolErrors."""
    try:
        yield
    except ToolError:
        raise
    except ValidationError:
        raise
    except ValueError as exc:
        raise ToolError(f"{exc}{hint}") from exc


def check_layer(pair: ModelPair, layer: int | None, *, name: str = "layer") -> int:
    """A valid layer index (the middle layer when `layer` is None), or a ToolError naming the range."""
    n = pair.n_layers
    if layer is None:
        return n // 2
    if not 0 <= layer < n:
        raise ToolError(
            f"{name} {layer} is out of range: this pair has layers 0..{n - 1}; pass one of those"
        )
    return layer


def check_neuron(pair: ModelPair, neuron: int) -> int:
    """A valid MLP neuron index, or a ToolError naming the range."""
    n = pair.n_neurons
    if not 0 <= neuron < n:
        raise ToolError(
            f"neuron {neuron} is out of range: each layer has neurons 0..{n - 1}; pass one of those"
        )
    return neuron


def use_chat(pair: ModelPair, chat: bool | None) -> bool:
    """Whether prompts get the chat template: `chat`, else the pair's default."""
    wanted = pair.is_chat if chat is None else chat
    if wanted and not pair.has_chat_template:
        raise ToolError("this pair's tokenizer has no chat template; call again with chat=false")
    return wanted


def check_prompts(
    pair: ModelPair, prompts: Sequence[str], *, chat: bool = False, reserve: int = 0
) -> list[int]:
    """Token counts of the (chat-formatted) prompts; a ToolError for an empty prompt or one that
    leaves fewer than `reserve` tokens (the tokens to generate) of the pair's context."""
    limit = pair.context_length
    room = limit - reserve
    if room < 1:
        raise ToolError(
            f"max_new_tokens={reserve} leaves no room for a prompt in this pair's context of "
            f"{limit} tokens; lower max_new_tokens (at most {max(limit - 1, 0)} here, minus the "
            "prompt's tokens)"
        )
    counts = []
    for i, prompt in enumerate(prompts):
        with engine_errors():
            text = pair.format_prompt(prompt, chat)
        try:
            n = len(pair.token_ids(text))  # as the model's own tokenizer counts
        except ValueError:  # empty after tokenization
            n = 0
        if n == 0:
            raise ToolError(f"prompt {i} is empty after tokenization; give it some text")
        if n > room:
            extra = f" minus max_new_tokens={reserve}" if reserve else ""
            raise ToolError(
                f"prompt {i} is {n} tokens long; this pair's context is {limit} tokens{extra}, "
                f"so at most {room} fit; shorten the prompt"
            )
        counts.append(n)
    return counts


def count_tokens(pair: ModelPair, texts: Sequence[str]) -> int:
    """Tokens in generated texts (what the generated-tokens budget is charged)."""
    tok = cast(Callable[..., Any], pair.tokenizer)  # a transformers tokenizer (typed object)
    return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)


class NeuronExemplar(BaseModel):
    """A corpus snippet where a neuron's gap peaked; the peak token is marked [[like this]]."""

    text: str
    token: str = Field(description="the peak token")
    gap: float = Field(description="|a_ft - a_base| at the peak token")
    base_activation: float
    finetuned_activation: float
