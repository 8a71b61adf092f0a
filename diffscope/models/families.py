"""One adapter table per architecture family: where layers, MLP neurons, norms and unembedding live."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict, cast

import torch
from torch import nn


@dataclass(frozen=True)
class Family:
    """Module paths for one architecture family (relative to the model, or to a block).

    The MLP neuron activation is the output of `neuron_module` (GPT-2: `mlp.act`, after GELU) or the
    input of it (Llama-style: the input of `mlp.down_proj`, i.e. act(gate(x)) * up(x)).
    `mlp_norm` is the norm whose input is the residual stream entering the MLP sub-layer.
    """

    name: str
    layers: str
    final_norm: str
    unembed: str
    embed: str
    mlp: str
    mlp_norm: str
    neuron_module: str
    neuron_side: Literal["output", "input"]
    out_proj: str
    out_weight_layout: Literal["in_out", "out_in"]


class _FamilyFields(TypedDict):
    """Every `Family` field but `name`, shared by families that differ only in name."""

    layers: str
    final_norm: str
    unembed: str
    embed: str
    mlp: str
    mlp_norm: str
    neuron_module: str
    neuron_side: Literal["output", "input"]
    out_proj: str
    out_weight_layout: Literal["in_out", "out_in"]


_LLAMA_LIKE: _FamilyFields = {
    "layers": "model.layers",
    "final_norm": "model.norm",
    "unembed": "lm_head",
    "embed": "model.embed_tokens",
    "mlp": "mlp",
    "mlp_norm": "post_attention_layernorm",
    "neuron_module": "mlp.down_proj",
    "neuron_side": "input",
    "out_proj": "mlp.down_proj",
    "out_weight_layout": "out_in",
}
_GEMMA2_LIKE: _FamilyFields = {**_LLAMA_LIKE, "mlp_norm": "pre_feedforward_layernorm"}

FAMILIES: dict[str, Family] = {
    "gpt2": Family(
        name="gpt2",
        layers="transformer.h",
        final_norm="transformer.ln_f",
        unembed="lm_head",
        embed="transformer.wte",
        mlp="mlp",
        mlp_norm="ln_2",
        neuron_module="mlp.act",
        neuron_side="output",
        out_proj="mlp.c_proj",
        out_weight_layout="in_out",
    ),
    "llama": Family(name="llama", **_LLAMA_LIKE),
    "mistral": Family(name="mistral", **_LLAMA_LIKE),
    "qwen2": Family(name="qwen2", **_LLAMA_LIKE),
    "qwen3": Family(name="qwen3", **_LLAMA_LIKE),
    "gemma": Family(name="gemma", **_LLAMA_LIKE),
    "gemma2": Family(name="gemma2", **_GEMMA2_LIKE),
    "gemma3_text": Family(name="gemma3_text", **_GEMMA2_LIKE),
}


def family_for(model: nn.Module) -> Family:
    """The family of a loaded transformers model, or a ValueError naming the supported ones."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in FAMILIES:
        raise ValueError(
            f"architecture {model_type!r} is not supported; supported families: "
            f"{', '.join(sorted(FAMILIES))}"
        )
    return FAMILIES[model_type]


def get_module(root: nn.Module, path: str) -> nn.Module:
    """Follow a dotted attribute path (`transformer.h`, `mlp.act`) from `root`."""
    module = root
    for part in path.split("."):
        module = getattr(module, part)
    return module


def blocks(model: nn.Module, family: Family) -> nn.ModuleList:
    """The list of transformer blocks."""
    return get_module(model, family.layers)  # type: ignore[return-value]


def neuron_output_weights(model: nn.Module, family: Family, layer: int) -> torch.Tensor:
    """Each neuron's output vector at `layer`, shape [n_neurons, d_model]."""
    # `nn.Module.__getattr__` is typed Tensor | Module; a projection's `.weight` is a Parameter.
    weight = cast(torch.Tensor, get_module(blocks(model, family)[layer], family.out_proj).weight)
    return weight if family.out_weight_layout == "in_out" else weight.T


def n_neurons(model: nn.Module, family: Family) -> int:
    """MLP width (neurons per layer)."""
    return neuron_output_weights(model, family, 0).shape[0]
