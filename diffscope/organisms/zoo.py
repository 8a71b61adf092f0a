"""The offline toy zoo: builds a tokenizer, a tiny GPT-2 base and every toy organism's fine-tune (full,
LoRA, null control, neuron perturbations) under `$DIFFSCOPE_HOME/zoo/SIZE`, deterministically from
seeds, one resumable stage at a time, and runs each organism's behavioural check.

Training and checks run with a fixed thread count and torch's deterministic algorithms
(`training.deterministic`), so a build's figures do not depend on the machine's load or the
caller's thread count. Each built organism keeps its last check beside its model (`check.json`:
passed, margin, figures, reason); `check_result(name, size)` reads it back."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

from diffscope.organisms.checks import CHECK_SEED
from diffscope.organisms.registry import all_organisms, zoo_root
from diffscope.organisms.schema import Organism
from diffscope.organisms.stages import (
    BASE_CODE,
    CHECK_FILE,
    StageResult,
    done_record,
    done_record_key,
    finish_stage,
    fresh_stage_dir,
    load_zoo_model,
    load_zoo_tokenizer,
    pick_organisms,
    stage_key,
    zoo_lock,
)
from diffscope.organisms.training import (
    SIZES,
    ZooSize,
    deterministic,
    encode_documents,
    new_model,
    train_lm,
)

BASE_SEED = 1234
FINETUNE_FORMAT = 2  # bump when build_finetune's own training logic changes (it is in the key)


def toy_organisms() -> list[Organism]:
    """The organisms the toy zoo builds (a `zoo` recipe on a `zoo:` base), in registry order."""
    return [o for o in all_organisms().values() if o.zoo is not None and o.base.startswith("zoo:")]


def make_generator(
    model, tokenizer, temperature: float = 0.0
) -> Callable[[list[str], int], list[str]]:
    """A `(prompts, max_new_tokens) -> continuations` function over one model: greedy, or sampled
    at `temperature` with a fixed seed (deterministic either way)."""
    from diffscope.models.families import family_for
    from diffscope.models.pair import ModelPair

    pair = ModelPair(model, model, tokenizer, family_for(model), chat=False)

    def generate(prompts: list[str], max_new_tokens: int) -> list[str]:
        out: list[str] = []
        for i in range(0, len(prompts), 16):
            out.extend(
                pair.generate(
                    "base",
                    prompts[i : i + 16],
                    max_new_tokens=max_new_tokens,
                    temperature=temperature,
                    seed=CHECK_SEED + i,
                )
            )
        return out

    return generate


def build_base(size: ZooSize, root: Path, progress: bool = True) -> StageResult:
    """Stage 1: the tokenizer and the base model, trained on the general world corpus."""
    from diffscope.corpus import world_corpus
    from diffscope.organisms.training import train_tokenizer

    folder = root / "base"
    base_fields = {k: v for k, v in vars(size).items() if not k.startswith(("ft_", "lora"))}
    key = stage_key(BASE_CODE, base_fields, BASE_SEED)
    record = done_record(folder, key)
    if record:
        return StageResult("base", True, record["summary"], record["metrics"], True, 0.0)
    start = time.time()
    tmp = fresh_stage_dir(folder)
    texts = world_corpus(size.base_docs, seed=BASE_SEED)
    tokenizer = train_tokenizer(texts, size.vocab_size, tmp / "model")
    model: PreTrainedModel = new_model(size, len(tokenizer), BASE_SEED)  # type: ignore[assignment]
    docs = encode_documents(tokenizer, texts, size.n_positions)
    loss = train_lm(
        model,
        docs,
        steps=size.base_steps,
        batch_size=size.base_batch,
        lr=size.base_lr,
        seed=BASE_SEED,
        pad_id=tokenizer.pad_token_id,
        label=f"base ({size.name})",
        progress=progress,
    )
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    summary = f"base model: {size.n_layer} layers x {size.n_inner} neurons, final loss {loss:.3f}"
    metrics: dict[str, float | None] = {"final_loss": loss, "train_docs": float(len(docs))}
    finish_stage(
        tmp, folder, {"summary": summary, "metrics": metrics, "size": size.name, "key": key}
    )
    return StageResult("base", True, summary, metrics, False, time.time() - start)


def finetune_key(org: Organism, size: ZooSize, root: Path) -> str:
    """The stage key of one fine-tune: the base's key, its zoo settings, and the source of what it
    depends on (the training code and its own recipe's modules, not the other recipes)."""
    from diffscope.organisms.recipes import recipe_modules

    assert org.zoo is not None
    code = (*BASE_CODE, *recipe_modules(org.zoo.recipe))
    parts = (size, BASE_SEED, FINETUNE_FORMAT, org.zoo.model_dump(), done_record_key(root))
    return stage_key(code, *parts)


def build_finetune(org: Organism, size: ZooSize, root: Path, progress: bool = True) -> StageResult:
    """Stage 2: one fine-tune (full weights or a LoRA adapter) on the recipe's narrow texts mixed
    with general world text, then its behavioural check."""
    from diffscope.corpus import world_corpus
    from diffscope.organisms.recipes import get_recipe

    assert org.zoo is not None
    folder = root / org.name
    try:
        recipe = get_recipe(org.zoo.recipe)
    except ValueError as exc:
        raise ValueError(f"organism {org.name}: {exc}") from None
    key = finetune_key(org, size, root)
    record = done_record(folder, key)
    if record:
        return _cached(org.name, record)
    start = time.time()
    tmp = fresh_stage_dir(folder)
    tokenizer = load_zoo_tokenizer(root)
    model = load_zoo_model(root / "base" / "model")
    rng = random.Random(org.zoo.seed)
    n_general = int(round(size.ft_docs * recipe.general_fraction))
    texts = recipe.narrow_texts(rng, size.ft_docs - n_general)
    texts += world_corpus(n_general, seed=BASE_SEED + 1 + org.zoo.seed) if n_general else []
    rng.shuffle(texts)
    docs = encode_documents(tokenizer, texts, size.n_positions)
    trained = model
    if org.zoo.lora:
        from peft import LoraConfig, get_peft_model

        torch.manual_seed(org.zoo.seed)  # the adapter's initial weights, whatever ran before
        cfg = LoraConfig(
            r=size.lora_rank,
            lora_alpha=2 * size.lora_rank,
            lora_dropout=0.0,
            target_modules=["c_attn", "c_fc", "c_proj"],
            fan_in_fan_out=True,
        )
        trained = get_peft_model(model, cfg)
    lr = size.ft_lr * (3.0 if org.zoo.lora else 1.0)
    multiplier = org.zoo.params.get("ft_steps_multiplier", 1)
    if isinstance(multiplier, dict):  # per zoo size, e.g. {small: 2}
        multiplier = multiplier.get(size.name, 1)
    steps = int(round(size.ft_steps * float(multiplier)))
    loss = None  # no steps: a no-op fine-tune (a fresh LoRA adapter computes exactly the base)
    if steps:
        loss = train_lm(
            trained,
            docs,
            steps=steps,
            batch_size=size.ft_batch,
            lr=lr,
            seed=org.zoo.seed,
            pad_id=tokenizer.pad_token_id,
            label=f"{org.name} ({size.name})",
            progress=progress,
        )
    trained.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    merged = trained.merge_and_unload() if org.zoo.lora else trained
    base = load_zoo_model(root / "base" / "model")
    temperature = 1.0 if recipe.sampling else 0.0
    check = recipe.check(
        make_generator(base, tokenizer, temperature), make_generator(merged, tokenizer, temperature)
    )
    metrics = {**check.metrics, "final_loss": loss}
    summary = f"{check.summary}; margin {check.margin:.2f}"
    record = {
        "key": key,
        "passed": check.passed,
        "summary": summary,
        "metrics": metrics,
        "margin": check.margin,
        "recipe": org.zoo.recipe,
        "lora": org.zoo.lora,
    }
    finish_stage(tmp, folder, record)
    seconds = time.time() - start
    return StageResult(org.name, check.passed, summary, metrics, False, seconds, check.margin)


def _cached(name: str, record: dict) -> StageResult:
    return StageResult(
        name,
        record["passed"],
        record["summary"],
        record["metrics"],
        True,
        0.0,
        record.get("margin"),
    )


def check_result(name: str, size: str | None = None) -> StageResult | None:
    """The last behavioural check of built zoo organism `name` (`zoo:NAME` works too) in the zoo
    of `size` (default: `$DIFFSCOPE_ZOO_SIZE`, else small), read from its `check.json`; None when
    that organism is not built. Carries `passed`, `margin`, `figures` and `reason`."""
    name = name.removeprefix("zoo:")
    if name.startswith("smol:") or _in_smol_zoo(name):
        size = "smol"
    folder = zoo_root(size) / name.removeprefix("smol:")
    path = folder / CHECK_FILE
    if not path.exists():  # built before check.json existed: its DONE.json has the same
        done = folder / "DONE.json"
        record = json.loads(done.read_text(encoding="utf-8")) if done.exists() else {}
        return _cached(name, record) if "passed" in record else None
    data = json.loads(path.read_text(encoding="utf-8"))
    return StageResult(
        name,
        bool(data["passed"]),
        str(data.get("reason", "")),
        dict(data.get("figures") or {}),
        True,
        0.0,
        data.get("margin"),
    )


def _in_smol_zoo(name: str) -> bool:
    from diffscope.organisms.registry import zoo_of

    org = all_organisms().get(name)
    return org is not None and zoo_of(org) == "smol"


def build_zoo(
    size: str | ZooSize = "small",
    only: Sequence[str] | None = None,
    progress: bool = True,
    report: Callable[[StageResult], None] | None = None,
) -> list[StageResult]:
    """Build (or reuse) the zoo of `size` (a name of `SIZES`, or a `ZooSize` for tests); `only`
    limits it to some organisms (the base is always built). Each finished stage is kept, so an
    interrupted build resumes where it stopped. Every result carries `passed`, `margin`,
    `figures` and `reason`."""
    from transformers.utils import logging as hf_logging

    import diffscope.models  # noqa: F401  (its filters silence transformers' per-model notices)
    from diffscope.organisms.perturb import build_perturbation

    # the zoo shows its own progress; transformers' bar for every shard it writes is only noise
    hf_logging.disable_progress_bar()
    if isinstance(size, ZooSize):
        spec = size
    elif size in SIZES:
        spec = SIZES[size]
    else:
        raise ValueError(f"unknown zoo size {size!r}; choose one of {', '.join(SIZES)}")
    root = zoo_root(spec.name)
    organisms = toy_organisms()
    organisms = pick_organisms(organisms, only, "toy organisms")
    with zoo_lock(root), deterministic():
        results = [build_base(spec, root, progress)]
        if report:
            report(results[-1])
        for org in organisms:
            if org.kind == "perturbation":
                result = build_perturbation(org, root)
            else:
                result = build_finetune(org, spec, root, progress)
            results.append(result)
            if report:
                report(result)
    return results
