"""Where a model's layers live: device maps for models larger than one device.

`--device-map auto` (or balanced, sequential, or a JSON map of module name -> device) loads each
model through accelerate, which may spread its layers over several GPUs, the CPU and the disk and
moves activations between them with its own per-module hooks. The helpers here answer what the rest
of the package needs to stay correct under such a split:

- `parse_device_map` turns the option into what `from_pretrained(device_map=...)` takes, and
  `load_options` adds an offload folder for weights no device holds;
- `module_device` is the device a module computes on (accelerate's execution device, else the
  device of its first real parameter), so a hook or a direct call on one sub-layer feeds it inputs
  on the right device;
- `input_device` is where token ids go (the embedding's execution device);
- `real_tensor` reads a weight that accelerate offloaded (held on the meta device, its values in
  the hook's weights map), so fingerprints and output weights see the true values;
- `dispatch` splits an in-memory model by a map (tests, benchmarks), with disk offload when asked.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffscope.models.families import Family, blocks, get_module

PRESETS = ("auto", "balanced", "balanced_low_0", "sequential")
DeviceMap = str | dict[str, Any]


class PlacementError(ValueError):
    """A device map that cannot be used; the message says what to give instead."""


def parse_device_map(spec: str | None) -> DeviceMap | None:
    """`--device-map` as `from_pretrained` takes it: a preset name, or a dict read from inline
    JSON or a .json file mapping module names to devices (an int GPU index, "cpu", "disk")."""
    if spec is None or spec == "":
        return None
    if spec in PRESETS:
        return spec
    text = spec
    path = Path(spec).expanduser()
    if path.suffix == ".json":
        if not path.is_file():
            raise PlacementError(f"device map file {spec} does not exist; give a .json file")
        text = path.read_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlacementError(
            f"--device-map must be one of {', '.join(PRESETS)}, a JSON object or a .json file "
            f"mapping module names to devices; could not read {spec!r}: {exc.msg}"
        ) from exc
    if not isinstance(value, dict) or not value:
        raise PlacementError("a device map must be a non-empty JSON object {module: device}")
    for name, device in value.items():
        if not isinstance(device, int | str) or isinstance(device, bool):
            raise PlacementError(f"device of {name!r} must be a GPU index, 'cpu' or 'disk'")
    return value


def load_options(device_map: str | None, source: str) -> dict[str, Any]:
    """Keyword arguments of `from_pretrained` for `--device-map` (none without one): the map, and
    an offload folder for weights that fit on no device, one per source, under
    $DIFFSCOPE_OFFLOAD (default: $DIFFSCOPE_HOME/offload)."""
    placed = parse_device_map(device_map)
    if placed is None:
        return {}
    import hashlib
    import os

    from diffscope.paths import home

    root = Path(os.environ.get("DIFFSCOPE_OFFLOAD") or home() / "offload").expanduser()
    tag = hashlib.blake2b(str(Path(source).expanduser()).encode(), digest_size=8).hexdigest()
    return {"device_map": placed, "offload_folder": str(root / tag)}


def _hooks(module: nn.Module) -> list[Any]:
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return []
    return list(getattr(hook, "hooks", [hook]))


def module_device(module: nn.Module) -> torch.device:
    """The device `module` computes on: accelerate's execution device when it placed the module
    (also for weights it offloaded to the CPU or disk), else its first non-meta parameter's."""
    for hook in _hooks(module):
        device = getattr(hook, "execution_device", None)
        if device is not None:
            return torch.device(device if not isinstance(device, int) else f"cuda:{device}")
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.device.type != "meta":
            return tensor.device
    for sub in module.modules():  # offloaded weights: the submodule hook knows the device
        for hook in _hooks(sub):
            device = getattr(hook, "execution_device", None)
            if device is not None:
                return torch.device(device if not isinstance(device, int) else f"cuda:{device}")
    return torch.device("cpu")


def input_device(model: nn.Module, family: Family) -> torch.device:
    """Where a batch's token ids must sit: the embedding's execution device."""
    return module_device(get_module(model, family.embed))


def layer_devices(model: nn.Module, family: Family) -> list[str]:
    """The device each transformer block computes on (for logs and tests)."""
    return [str(module_device(block)) for block in blocks(model, family)]


def is_split(model: nn.Module) -> bool:
    """Whether accelerate placed the model by a device map (hooks that move weights or inputs)."""
    return bool(getattr(model, "hf_device_map", None)) or any(_hooks(m) for m in model.modules())


def real_tensor(model: nn.Module, name: str, tensor: torch.Tensor) -> torch.Tensor:
    """The values of state-dict entry `name`: `tensor` itself, unless accelerate offloaded it (a
    meta tensor), then the copy in the owning module's weights map (CPU memory or disk)."""
    if tensor.device.type != "meta":
        return tensor
    owner, _, leaf = name.rpartition(".")
    module = get_module(model, owner) if owner else model
    for hook in _hooks(module):
        weights = getattr(hook, "weights_map", None)
        if weights is not None and leaf in weights:
            return weights[leaf]
    raise PlacementError(
        f"weight {name} is on the meta device and no offload map holds it: load the model with "
        "a device map that keeps every weight somewhere (GPU, cpu or disk)"
    )


def weight(model: nn.Module, module: nn.Module, attr: str = "weight") -> torch.Tensor:
    """A module's parameter with its true values (offloaded weights read from their map)."""
    tensor = getattr(module, attr)
    if tensor.device.type != "meta":
        return tensor
    for name, sub in model.named_modules():
        if sub is module:
            return real_tensor(model, f"{name}.{attr}" if name else attr, tensor)
    raise PlacementError("module is not part of the model")


def dispatch(
    model: nn.Module, device_map: dict[str, Any], offload_dir: str | Path | None = None
) -> nn.Module:
    """Split an in-memory model by `device_map` (module name -> GPU index, "cpu" or "disk")
    with accelerate's hooks; "disk" needs `offload_dir`."""
    from accelerate import dispatch_model

    if "disk" in device_map.values() and offload_dir is None:
        raise PlacementError("a device map with 'disk' entries needs an offload folder")
    if all(d == "disk" for d in device_map.values()):
        raise PlacementError("a device map needs at least one module on a compute device")
    main = next((d for d in device_map.values() if d not in ("cpu", "disk")), "cpu")
    return dispatch_model(
        model,
        device_map=device_map,
        main_device=main,
        offload_dir=str(offload_dir) if offload_dir is not None else None,
        force_hooks=True,
    )
