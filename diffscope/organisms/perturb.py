"""Synthetic neuron perturbations: copies of the base model with K chosen MLP neurons scaled,
sign-flipped or given a bias. The ground truth is the exact (layer, neuron) set, recorded at build."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch

from diffscope.models.families import family_for
from diffscope.models.hooks import capture
from diffscope.organisms.checks import at_least
from diffscope.organisms.schema import Organism
from diffscope.organisms.stages import (
    PERTURB_CODE,
    StageResult,
    done_record,
    done_record_key,
    finish_stage,
    fresh_stage_dir,
    load_zoo_model,
    load_zoo_tokenizer,
    stage_key,
)

EDITS = ("scale", "flip", "bias")
MIN_GAP = 0.1  # the weakest planted neuron's mean |gap| / std must exceed this


def _probe_windows(tokenizer, n_docs: int = 48, seed: int = 99) -> list[torch.Tensor]:
    from diffscope.corpus import world_corpus

    texts = world_corpus(n_docs, seed=seed)
    return [torch.tensor([tokenizer(t, add_special_tokens=False)["input_ids"][:96]]) for t in texts]


@torch.no_grad()
def _activations(model, windows) -> dict[int, list[torch.Tensor]]:
    """Every layer's MLP neuron activations, one [tokens, n] tensor per window."""
    family = family_for(model)
    layers = list(range(model.config.num_hidden_layers))
    acts: dict[int, list[torch.Tensor]] = {i: [] for i in layers}
    for ids in windows:
        with capture(model, family, neurons=layers) as got:
            model(input_ids=ids)
        for i in layers:
            acts[i].append(got.neurons[i][0])
    return acts


def choose_neurons(stds: dict[int, torch.Tensor], k: int, seed: int) -> list[tuple[int, int]]:
    """K distinct (layer, neuron) pairs drawn uniformly among neurons whose activation varies more
    than the median of their layer (edits to dead neurons would be invisible by construction)."""
    rng = random.Random(seed)
    pool: list[tuple[int, int]] = []
    for layer, std in stds.items():
        threshold = std.median()
        pool.extend((layer, int(n)) for n in torch.nonzero(std > threshold).view(-1).tolist())
    if k > len(pool):
        raise ValueError(f"cannot choose {k} neurons from {len(pool)} active ones")
    return sorted(rng.sample(pool, k))


@torch.no_grad()
def apply_edits(model, neurons, edit: str, value: float) -> list[dict]:
    """Edit a GPT-2 model's neurons in place; returns the edit records."""
    if model.config.model_type != "gpt2":
        raise ValueError("neuron perturbations are implemented for the GPT-2 family only")
    if edit not in EDITS:
        raise ValueError(f"edit must be one of {EDITS}, not {edit!r}")
    records = []
    for layer, neuron in neurons:
        c_fc = model.transformer.h[layer].mlp.c_fc
        if edit == "scale":
            c_fc.weight[:, neuron] *= value
            c_fc.bias[neuron] *= value
        elif edit == "flip":
            c_fc.weight[:, neuron] *= -1.0
            c_fc.bias[neuron] *= -1.0
        else:
            pre_scale = float(c_fc.weight[:, neuron].norm())
            c_fc.bias[neuron] += value * pre_scale
        records.append({"layer": layer, "neuron": neuron, "edit": edit, "value": value})
    return records


def build_perturbation(org: Organism, root: Path):
    """Build one perturbation organism from the zoo's base and check the edit is visible."""
    assert org.zoo is not None
    folder = root / org.name
    key = stage_key(PERTURB_CODE, org.zoo.model_dump(), done_record_key(root))
    record = done_record(folder, key)
    if record:
        return StageResult(
            org.name,
            record["passed"],
            record["summary"],
            record["metrics"],
            True,
            0.0,
            record.get("margin"),
        )
    start = time.time()
    params = org.zoo.params
    edit, k = params.get("edit", "scale"), int(params.get("k", 5))
    value = float(params.get("value", {"scale": 3.0, "flip": -1.0, "bias": 1.0}[edit]))
    tokenizer = load_zoo_tokenizer(root)
    base = load_zoo_model(root / "base" / "model")
    model = load_zoo_model(root / "base" / "model")
    windows = _probe_windows(tokenizer)
    base_acts = _activations(base, windows)
    stds = {layer: torch.cat(acts).std(0) for layer, acts in base_acts.items()}
    neurons = choose_neurons(stds, k, org.zoo.seed)
    records = apply_edits(model, neurons, edit, value)
    tmp = fresh_stage_dir(folder)
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    (tmp / "perturbation.json").write_text(json.dumps({"neurons": records}, indent=2))
    # behavioural check: each planted neuron's activation moved by a visible amount
    checked = windows[:16]
    ft_acts = _activations(model, checked)
    moved = []
    for layer, neuron in neurons:
        before = torch.cat(base_acts[layer][: len(checked)])[:, neuron]
        after = torch.cat(ft_acts[layer])[:, neuron]
        moved.append(float((after - before).abs().mean() / (before.std() + 1e-6)))
    weakest = min(moved)
    passed = weakest > MIN_GAP
    margin = round(at_least(weakest, MIN_GAP), 4)
    summary = (
        f"{k} neurons {edit} (value {value}); planted neurons' mean |gap| / std: "
        f"weakest {weakest:.2f}, median {sorted(moved)[len(moved) // 2]:.2f} (need > {MIN_GAP:g}); "
        f"margin {margin:.2f}"
    )
    metrics: dict[str, float | None] = {"weakest_gap": weakest, "k": float(k)}
    finish_stage(
        tmp,
        folder,
        {
            "passed": passed,
            "summary": summary,
            "metrics": metrics,
            "margin": margin,
            "recipe": "perturb",
            "key": key,
        },
    )
    return StageResult(org.name, passed, summary, metrics, False, time.time() - start, margin)
