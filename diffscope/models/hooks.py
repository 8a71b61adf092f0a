"""Activation capture with plain PyTorch hooks: MLP neurons, residual stream and MLP inputs per
layer, plus additive interventions on the residual stream (steering)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from diffscope.models.families import Family, blocks, get_module


@dataclass
class Captured:
    """What one forward pass left behind, keyed by layer index."""

    neurons: dict[int, torch.Tensor] = field(default_factory=dict)
    resid: dict[int, torch.Tensor] = field(default_factory=dict)
    mlp_in: dict[int, torch.Tensor] = field(default_factory=dict)


def _first(output: object) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[return-value]


@contextmanager
def capture(
    model: nn.Module,
    family: Family,
    *,
    neurons: Sequence[int] = (),
    resid: Sequence[int] = (),
    mlp_in: Sequence[int] = (),
    detach: bool = True,
) -> Iterator[Captured]:
    """Record MLP neuron activations, block outputs (residual stream after the layer) and the
    residual entering each MLP sub-layer for the given layers during forwards inside the block."""
    got = Captured()
    handles = []
    layer_blocks = blocks(model, family)

    def keep(store: dict[int, torch.Tensor], layer: int, value: torch.Tensor) -> None:
        store[layer] = value.detach() if detach else value

    for layer in neurons:
        module = get_module(layer_blocks[layer], family.neuron_module)
        if family.neuron_side == "output":

            def hook_out(_m, _i, out, layer=layer):
                keep(got.neurons, layer, _first(out))

            handles.append(module.register_forward_hook(hook_out))
        else:

            def hook_in(_m, args, layer=layer):
                keep(got.neurons, layer, args[0])

            handles.append(module.register_forward_pre_hook(hook_in))
    for layer in resid:

        def hook_resid(_m, _i, out, layer=layer):
            keep(got.resid, layer, _first(out))

        handles.append(layer_blocks[layer].register_forward_hook(hook_resid))
    for layer in mlp_in:
        norm = get_module(layer_blocks[layer], family.mlp_norm)

        def hook_mlp_in(_m, args, layer=layer):
            keep(got.mlp_in, layer, args[0])

        handles.append(norm.register_forward_pre_hook(hook_mlp_in))
    try:
        yield got
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def add_to_residual(
    model: nn.Module,
    family: Family,
    layer: int,
    vector: torch.Tensor,
    *,
    positions: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[None]:
    """Add `vector` ([d_model]) to the residual stream after block `layer` on every position (or on
    the positions selected by `positions(hidden) -> bool mask [B, T]`)."""
    block = blocks(model, family)[layer]

    def hook(_m, _i, out):
        hidden = _first(out)
        delta = vector.to(hidden.dtype).to(hidden.device)
        if positions is None:
            hidden = hidden + delta
        else:
            mask = positions(hidden).unsqueeze(-1).to(hidden.dtype)
            hidden = hidden + mask * delta
        return (hidden, *out[1:]) if isinstance(out, tuple) else hidden

    handle = block.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def neuron_activations_from_mlp_input(
    model: nn.Module, family: Family, layer: int, resid_in: torch.Tensor
) -> torch.Tensor:
    """Run `model`'s MLP sub-layer (its norm and MLP) at `layer` on a given residual input and
    return its neuron activations. Used for the intrinsic gap: the fine-tuned MLP on the base residual."""
    block = blocks(model, family)[layer]
    norm = get_module(block, family.mlp_norm)
    mlp = get_module(block, family.mlp)
    with capture(model, family, neurons=[layer]) as got:
        mlp(norm(resid_in))
    return got.neurons[layer]
