"""The nnsight capture backend (`--backend nnsight`): the same activations `diffscope.models.hooks`
records (MLP neurons, the residual stream after each block, the residual entering each MLP),
read through an nnsight trace instead of plain forward hooks, and the trace's remote execution on
NDIF (`--remote`) for models no local machine holds.

A trace reads modules in the order the forward reaches them (per block: the MLP norm's input,
then the neurons, then the block's output) and stops the forward right after the last one wanted,
like `hooks.forward_until_neurons`. Only `nnsight.save(...)` is used inside traces; nnsight is
imported on first use, so the hooks backend never loads it.

Remote runs send the trace to NDIF with the key in $NDIF_API_KEY; `require_ndif_key` refuses
before any model work when it is missing. Primitives that run a sub-layer on a given input (the
intrinsic mode) or edit the forward (steering) stay on hooks: an nnsight trace reads and writes
values inside one forward of the whole model and has no way to call one layer's MLP on another
model's residual.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from diffscope.models.families import Family
from diffscope.models.hooks import Captured

BACKENDS = ("hooks", "nnsight")
NDIF_KEY_ENV = "NDIF_API_KEY"

_WRAPPED: weakref.WeakKeyDictionary[nn.Module, Any] = weakref.WeakKeyDictionary()


class RemoteError(ValueError):
    """A remote (NDIF) run cannot start; the message says what to set or give."""


def require_ndif_key() -> str:
    """The NDIF API key from $NDIF_API_KEY, or a RemoteError saying how to get and set one."""
    key = os.environ.get(NDIF_KEY_ENV, "").strip()
    if not key:
        raise RemoteError(
            f"--remote runs the models on NDIF and needs an API key: set {NDIF_KEY_ENV} "
            "(get a key at https://login.ndif.us), or drop --remote to run locally"
        )
    return key


def check_remote_workspace(backend: str) -> None:
    """Refuse `--remote` for a whole workspace, before any model work: without a key with how to
    set one; with `--backend hooks` (hooks cannot run remotely); and otherwise because a workspace
    needs the weights locally (fingerprint, output weights, generation). Remote execution is the
    trace level: `trace_activations(..., remote=True)` on an nnsight model of a hub id."""
    require_ndif_key()
    if backend != "nnsight":
        raise RemoteError("--remote runs nnsight traces: add --backend nnsight")
    raise RemoteError(
        "--remote is available for nnsight traces from Python "
        "(diffscope.models.nnsight_backend.trace_activations(..., remote=True)); a served or "
        "prepared workspace still needs both models' weights locally: drop --remote, or use "
        "--device-map auto to spread a large model over local devices"
    )


def check_backend(backend: str) -> str:
    """`backend` if it is one of BACKENDS, else a ValueError naming them."""
    if backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    return backend


def wrap(model: Any) -> Any:
    """The nnsight envoy of `model` (one per model, made on first use); an envoy passes through."""
    import nnsight

    if isinstance(model, nnsight.Envoy):
        return model
    envoy = _WRAPPED.get(model)
    if envoy is None:
        envoy = nnsight.NNsight(model)
        _WRAPPED[model] = envoy
    return envoy


def _at(envoy: Any, path: str) -> Any:
    for part in path.split("."):
        envoy = getattr(envoy, part)
    return envoy


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, tuple) else value


def trace_activations(
    model: Any,
    family: Family,
    inputs: dict[str, torch.Tensor],
    *,
    neurons: Sequence[int] = (),
    resid: Sequence[int] = (),
    mlp_in: Sequence[int] = (),
    stop: bool = True,
    remote: bool = False,
) -> Captured:
    """Run `model` on `inputs` in one nnsight trace and return what `hooks.capture` would record
    for the same layers; with `stop`, the forward ends after the last value read (no logits).
    `remote` runs the trace on NDIF (the model must be an nnsight model of a hub id NDIF hosts)."""
    import nnsight

    if remote:
        require_ndif_key()
    envoy = wrap(model)
    got = Captured()
    wanted = sorted(set(neurons) | set(resid) | set(mlp_in))
    if not wanted:
        return got
    stores: list[tuple[dict[int, torch.Tensor], int, Any]] = []
    layers = _at(envoy, family.layers)
    with torch.no_grad(), envoy.trace(**inputs, **({"remote": True} if remote else {})) as tracer:
        for layer in wanted:
            block = layers[layer]
            if layer in mlp_in:
                stores.append((got.mlp_in, layer, nnsight.save(_at(block, family.mlp_norm).input)))
            if layer in neurons:
                module = _at(block, family.neuron_module)
                value = module.output if family.neuron_side == "output" else module.input
                stores.append((got.neurons, layer, nnsight.save(_first(value))))
            if layer in resid:
                stores.append((got.resid, layer, nnsight.save(_first(block.output))))
        if stop:
            tracer.stop()
    for store, layer, value in stores:
        store[layer] = value.detach()
    return got
