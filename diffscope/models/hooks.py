"""Activation capture with plain PyTorch hooks: MLP neurons, residual stream and MLP inputs per
layer, a forward that stops once a layer's neurons are computed, plus additive interventions on the
residual stream (steering)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from diffscope.models.families import Family, blocks, get_module
from diffscope.models.placement import module_device


@dataclass
class Captured:
    """What one forward pass left behind, keyed by layer index."""

    neurons: dict[int, torch.Tensor] = field(default_factory=dict)
    resid: dict[int, torch.Tensor] = field(default_factory=dict)
    mlp_in: dict[int, torch.Tensor] = field(default_factory=dict)


def _first(output: object) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output  # type: ignore[return-value]


def on_neurons(
    block: nn.Module, family: Family, fn: Callable[[torch.Tensor], None]
) -> RemovableHandle:
    """Call `fn(neuron activations)` whenever `block`'s MLP computes its neurons (a forward hook on
    the neuron module's output, or a pre-hook on its input, as the family says)."""
    module = get_module(block, family.neuron_module)
    if family.neuron_side == "output":
        return module.register_forward_hook(lambda _m, _i, out: fn(_first(out)))
    return module.register_forward_pre_hook(lambda _m, args: fn(args[0]))


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

        def hook_neurons(acts: torch.Tensor, layer: int = layer) -> None:
            keep(got.neurons, layer, acts)

        handles.append(on_neurons(layer_blocks[layer], family, hook_neurons))
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


class _ForwardDone(Exception):
    """Raised from a hook to end a forward pass once everything wanted has been captured."""


def _run_until_neurons(
    block: nn.Module,
    family: Family,
    run: Callable[[], object],
    keep: Callable[[torch.Tensor], None] | None = None,
) -> None:
    """Call `run()` and end it as soon as `block`'s MLP has computed its neurons (handing them to
    `keep` first, when given)."""

    def stop(acts: torch.Tensor) -> None:
        if keep is not None:
            keep(acts)
        raise _ForwardDone

    handle = on_neurons(block, family, stop)
    try:
        run()
    except _ForwardDone:
        pass
    finally:
        handle.remove()


def forward_until_neurons(
    model: nn.Module, family: Family, layer: int, inputs: dict[str, torch.Tensor]
) -> None:
    """Run `model` on `inputs` only as far as the MLP neuron activations of `layer`: later layers,
    the final norm and the unembedding (often the costliest matmul) are skipped. Hooks registered
    before this call (e.g. by `capture`) on that layer's neuron module still run first."""
    _run_until_neurons(blocks(model, family)[layer], family, lambda: model(**inputs))


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
    """Run `model`'s MLP sub-layer (its norm and MLP, as far as the neurons) at `layer` on a given
    residual input and return its neuron activations. Used for the intrinsic gap: the fine-tuned MLP
    on the base residual. The input is moved to the device that layer computes on."""
    block = blocks(model, family)[layer]
    norm = get_module(block, family.mlp_norm)
    mlp = get_module(block, family.mlp)
    got: list[torch.Tensor] = []
    # under a device map the base's residual may sit on another device than this layer
    resid_in = resid_in.to(module_device(norm))
    _run_until_neurons(block, family, lambda: mlp(norm(resid_in)), got.append)
    return got[0]
