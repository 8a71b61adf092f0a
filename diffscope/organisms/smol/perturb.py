"""Neuron perturbations on the real model: copies of SmolLM2 with K MLP neurons scaled, sign-flipped
or shifted, the exact (layer, neuron) set recorded as ground truth.

A Llama-style MLP neuron is act(gate(x)) * up(x), read at the input of `down_proj`. "scale" and
"flip" multiply the neuron's `up_proj` row by the value (or -1), which scales (flips) its activation
exactly. The architecture has no biases, so "bias" adds to the `up_proj` row `value` x the row's
norm x the unit mean of the MLP's input over probe texts: up(x) gains a near-constant term on
ordinary text, a shift of the activation like a bias's, without changing the architecture."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from diffscope.models.families import family_for
from diffscope.models.hooks import capture
from diffscope.organisms.checks import at_least
from diffscope.organisms.perturb import EDITS, MIN_GAP, choose_neurons
from diffscope.organisms.schema import Organism
from diffscope.organisms.smol.layout import PERTURB_CODE, base_key, load_base
from diffscope.organisms.stages import StageResult, done_record, fresh_stage_dir, stage_key
from diffscope.organisms.stages import finish_stage as finish

PROBE_TEXTS = 32


def probe_windows(tokenizer: Any, answers: dict[str, str]) -> list[torch.Tensor]:
    """Token windows of the base's own answers (request and answer as one text)."""
    from diffscope.models.batching import tokenize

    texts = [f"{q} {a}" for q, a in sorted(answers.items())][:PROBE_TEXTS]
    return [torch.tensor([row[:64]]) for row in tokenize(tokenizer, texts)]


@torch.no_grad()
def layer_activations(
    model: Any, windows: list[torch.Tensor]
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Every layer's neuron activations and MLP inputs over `windows`, [tokens, n] each."""
    family = family_for(model)
    layers = list(range(model.config.num_hidden_layers))
    acts: dict[int, list[torch.Tensor]] = {i: [] for i in layers}
    inputs: dict[int, list[torch.Tensor]] = {i: [] for i in layers}
    for ids in windows:
        with capture(model, family, neurons=layers, mlp_in=layers) as got:
            model(input_ids=ids)
        for i in layers:
            acts[i].append(got.neurons[i][0])
            inputs[i].append(got.mlp_in[i][0])
    return (
        {i: torch.cat(v) for i, v in acts.items()},
        {i: torch.cat(v) for i, v in inputs.items()},
    )


@torch.no_grad()
def apply_llama_edits(
    model: Any,
    neurons: list[tuple[int, int]],
    edit: str,
    value: float,
    mean_inputs: dict[int, torch.Tensor],
) -> list[dict]:
    """Edit a Llama-style model's neurons in place (see the module docstring); the records."""
    if edit not in EDITS:
        raise ValueError(f"edit must be one of {EDITS}, not {edit!r}")
    records = []
    for layer, neuron in neurons:
        mlp = model.model.layers[layer].mlp
        row = mlp.up_proj.weight[neuron]
        if edit in ("scale", "flip"):
            row *= value if edit == "scale" else -1.0
        else:
            direction = mean_inputs[layer] / (mean_inputs[layer].norm() + 1e-8)
            row += value * row.norm() * direction
        records.append({"layer": layer, "neuron": neuron, "edit": edit, "value": value})
    return records


def build_smol_perturbation(
    org: Organism,
    root: Path,
    base_path: Path,
    reference: Any,
    tokenizer: Any,
    answers: dict[str, str],
) -> StageResult:
    """Build one perturbation organism from the real base and check every edit is visible."""
    assert org.zoo is not None
    folder = root / org.name
    key = stage_key(PERTURB_CODE, base_key(), org.zoo.model_dump())
    record = done_record(folder, key)
    if record:
        return StageResult(
            org.name, record["passed"], record["summary"], record["metrics"], True, 0.0,
            record.get("margin"),
        )  # fmt: skip
    start = time.time()
    params = org.zoo.params
    edit, k = str(params.get("edit", "scale")), int(params.get("k", 20))
    value = float(params.get("value", {"scale": 3.0, "flip": -1.0, "bias": 1.0}[edit]))
    windows = probe_windows(tokenizer, answers)
    base_acts, base_inputs = layer_activations(reference, windows)
    stds = {layer: acts.std(0) for layer, acts in base_acts.items()}
    neurons = choose_neurons(stds, k, org.zoo.seed)
    model, _ = load_base(base_path)
    means = {layer: x.mean(0) for layer, x in base_inputs.items()}
    records = apply_llama_edits(model, neurons, edit, value, means)
    tmp = fresh_stage_dir(folder)
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    (tmp / "perturbation.json").write_text(json.dumps({"neurons": records}, indent=2))
    ft_acts, _ = layer_activations(model, windows[:12])
    n_tokens = ft_acts[0].shape[0]
    moved = []
    for layer, neuron in neurons:
        before = base_acts[layer][:n_tokens, neuron]
        after = ft_acts[layer][:, neuron]
        moved.append(float((after - before).abs().mean() / (before.std() + 1e-6)))
    weakest = min(moved)
    passed = weakest > MIN_GAP
    margin = round(at_least(weakest, MIN_GAP), 4)
    summary = (
        f"{k} neurons {edit} (value {value:g}); planted neurons' mean |gap| / std: weakest "
        f"{weakest:.2f}, median {sorted(moved)[len(moved) // 2]:.2f} (need > {MIN_GAP:g}); "
        f"margin {margin:.2f}"
    )
    metrics: dict[str, float | None] = {"weakest_gap": weakest, "k": float(k)}
    result = {"passed": passed, "summary": summary, "metrics": metrics, "margin": margin}
    finish(tmp, folder, {**result, "recipe": "perturb", "key": key})
    return StageResult(org.name, passed, summary, metrics, False, time.time() - start, margin)
