"""Steering and logit amplification: directions in the residual stream (a neuron's output weights, a
mean activation difference, a crosscoder latent or any vector), generation with a direction added
at a layer, and sampling from logits_ft + alpha (logits_ft - logits_base)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, Field

from diffscope import progress as pg
from diffscope.diffing.lens import mean_diff
from diffscope.models.batching import Inputs
from diffscope.models.families import neuron_output_weights
from diffscope.models.hooks import add_to_residual, capture
from diffscope.models.pair import ModelPair, Which

Source = Literal["neuron", "mean_diff", "latent", "custom"]
SOURCES: tuple[str, ...] = ("neuron", "mean_diff", "latent", "custom")
MAX_NEW_TOKENS = 256
MAX_SAMPLES = 64


@dataclass(frozen=True)
class Direction:
    """A vector [d_model] to add to the residual stream after block `layer`, and its origin."""

    vector: torch.Tensor
    layer: int
    source: Source = "custom"
    label: str = ""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, not {self.source!r}")
        if self.vector.dim() != 1:
            raise ValueError(f"a direction is one vector, got shape {tuple(self.vector.shape)}")
        if not bool(torch.isfinite(self.vector).all()):
            raise ValueError("the direction holds NaN or infinite values")

    @property
    def norm(self) -> float:
        return float(self.vector.float().norm())

    def unit(self) -> torch.Tensor:
        """The direction scaled to norm 1 (float32); a ValueError for the zero vector."""
        if self.norm == 0:
            raise ValueError("the direction is the zero vector")
        return self.vector.detach().float() / self.norm

    def describe(self) -> dict[str, object]:
        """JSON-friendly facts about the direction (without the vector)."""
        return {"layer": self.layer, "source": self.source, "label": self.label, "norm": self.norm}


def neuron_direction(
    pair: ModelPair, layer: int, neuron: int, which: Which = "finetuned"
) -> Direction:
    """The output weights of MLP neuron `neuron` at `layer`: what it writes to the residual."""
    layer = pair.check_layer(layer)
    weights = neuron_output_weights(pair.model(which), pair.family, layer)
    if not 0 <= neuron < weights.shape[0]:
        raise ValueError(
            f"neuron {neuron} is out of range: layer {layer} has neurons 0..{weights.shape[0] - 1}"
        )
    return Direction(
        vector=weights[neuron].detach().float().cpu().clone(),
        layer=layer,
        source="neuron",
        label=f"L{layer}/N{neuron} ({which})",
    )


def mean_diff_direction(
    pair: ModelPair,
    windows: Inputs,
    layer: int,
    *,
    positions: int = 5,
    position: int | None = None,
    batch_size: int = 8,
    progress: pg.Show = None,
) -> Direction:
    """The mean activation difference (h_ft - h_base) after block `layer` over the first
    `positions` tokens of each window: at one `position`, or averaged over the positions."""
    if position is not None and not 0 <= position < positions:
        raise ValueError(f"position must be in 0..{positions - 1}, got {position}")
    diff = mean_diff(pair, windows, layer, positions, batch_size=batch_size, progress=progress)
    return direction_from_mean_diff(diff, pair.check_layer(layer), position)


def direction_from_mean_diff(
    diff: torch.Tensor, layer: int, position: int | None = None
) -> Direction:
    """The steering direction of a mean difference [positions, d] (what `lens.mean_diff` and
    `Artifacts.mean_diff` return): at one `position`, or averaged over the positions. A
    ValueError when no window reaches them."""
    positions = diff.shape[0]
    if position is None:
        vector = diff.nanmean(0)
        where = f"positions 0..{positions - 1}"
    else:
        vector = diff[position]
        where = f"position {position}"
    if not bool(torch.isfinite(vector).all()):
        raise ValueError(f"no window reaches {where}; give longer texts")
    return Direction(
        vector=vector,
        layer=layer,
        source="mean_diff",
        label=f"mean difference h_ft - h_base at layer {layer}, {where}",
    )


def _check_generation(pair: ModelPair, prompts: Sequence[str], max_new_tokens: int) -> None:
    if isinstance(prompts, str) or not prompts:
        raise ValueError("give a non-empty list of prompts")
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}")
    if max_new_tokens >= pair.context_length:
        raise ValueError(
            f"max_new_tokens {max_new_tokens} leaves no room for a prompt in the context of "
            f"{pair.context_length} tokens"
        )


@torch.no_grad()
def residual_norm(
    pair: ModelPair,
    prompts: Sequence[str],
    layer: int,
    which: Which = "finetuned",
    chat: bool | None = None,
) -> float:
    """Mean L2 norm of the residual after block `layer` over the prompts' tokens (the first
    token of each prompt is left out when it has more, as it often carries an outsized norm)."""
    layer = pair.check_layer(layer)
    batch = pair.encode([pair.format_prompt(p, chat) for p in prompts])
    model = pair.model(which)
    with capture(model, pair.family, resid=[layer]) as got:
        model(**batch.model_inputs())
    norms = got.resid[layer].float().norm(dim=-1)
    keep = batch.attention_mask.bool() & (
        (batch.position_ids > 0) | (batch.attention_mask.sum(-1, keepdim=True) == 1)
    )
    return float(norms[keep].mean())


class SteeredGenerations(BaseModel):
    """Generations with and without a direction added to the residual stream."""

    prompts: list[str]
    steered: list[str]
    unsteered: list[str]
    which: str
    layer: int
    source: str
    label: str
    strength: float
    normalised: bool
    resid_norm: float = Field(description="mean residual norm at the layer over the prompts")
    added_norm: float = Field(description="norm of the vector added at every position")


@torch.no_grad()
def steer(
    pair: ModelPair,
    prompts: Sequence[str],
    direction: Direction,
    strength: float,
    which: Which = "finetuned",
    max_new_tokens: int = 40,
    temperature: float = 0.0,
    seed: int = 0,
    normalise: bool = True,
    chat: bool | None = None,
) -> SteeredGenerations:
    """Generate from `which` model with `strength` x the unit direction x the mean residual norm
    at the direction's layer (estimated once from the prompts) added at every position, and
    without it. With `normalise=False` the raw vector times `strength` is added instead."""
    _check_generation(pair, prompts, max_new_tokens)
    if not math.isfinite(strength):
        raise ValueError(f"strength must be a finite number, got {strength}")
    layer = pair.check_layer(direction.layer)
    if direction.vector.shape[0] != pair.d_model:
        raise ValueError(
            f"the direction has {direction.vector.shape[0]} dimensions; this pair has d_model "
            f"{pair.d_model}"
        )
    norm = residual_norm(pair, prompts, layer, which, chat)
    unit = direction.unit() * norm if normalise else direction.vector.detach().float()
    delta = strength * unit

    def run() -> list[str]:
        return pair.generate(
            which,
            list(prompts),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            chat=chat,
        )

    unsteered = run()
    with add_to_residual(pair.model(which), pair.family, layer, delta):
        steered = run()
    return SteeredGenerations(
        prompts=list(prompts),
        steered=steered,
        unsteered=unsteered,
        which=which,
        layer=layer,
        source=direction.source,
        label=direction.label,
        strength=float(strength),
        normalised=normalise,
        resid_norm=norm,
        added_norm=float(delta.norm()),
    )


class AmplifiedSamples(BaseModel):
    """Samples from the amplified difference logits_ft + alpha (logits_ft - logits_base)."""

    alpha: float
    temperature: float
    prompts: list[str]
    samples: list[list[str]] = Field(description="n_samples continuations per prompt")


@torch.no_grad()
def amplify(
    pair: ModelPair,
    prompts: Sequence[str],
    alpha: float = 1.0,
    n_samples: int = 1,
    max_new_tokens: int = 40,
    temperature: float = 1.0,
    seed: int = 0,
    chat: bool | None = None,
) -> AmplifiedSamples:
    """Sample continuations from logits_ft + alpha (logits_ft - logits_base): alpha 0 is the
    fine-tune, larger alpha exaggerates what the fine-tune changed. Runs both models on the whole
    sequence at every step (no KV cache), so cost grows with the square of the length."""
    _check_generation(pair, prompts, max_new_tokens)
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha}")
    if not 1 <= n_samples <= MAX_SAMPLES:
        raise ValueError(f"n_samples must be between 1 and {MAX_SAMPLES}, got {n_samples}")
    texts = [pair.format_prompt(p, chat) for p in prompts for _ in range(n_samples)]
    batch = pair.encode(texts, max_length=pair.context_length - max_new_tokens)

    def amplified(ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        ft = pair.finetuned(**inputs).logits.float()
        if alpha == 0:
            return ft
        base = pair.base(**inputs).logits.float()
        return ft + alpha * (ft - base)

    gen = torch.Generator().manual_seed(seed)
    flat = pair.sample(pair.finetuned, batch, max_new_tokens, temperature, gen, logits_fn=amplified)
    samples = [flat[i * n_samples : (i + 1) * n_samples] for i in range(len(prompts))]
    return AmplifiedSamples(
        alpha=float(alpha), temperature=float(temperature), prompts=list(prompts), samples=samples
    )
