"""Resumable zoo stages: each stage builds into a temporary folder that is renamed into place with a
DONE.json record once complete, so an interrupted build resumes at the first unfinished stage."""

from __future__ import annotations

import fcntl
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from diffscope.paths import write_json


@dataclass
class StageResult:
    """What a built zoo entry reports: its behavioural check and whether it came from the cache."""

    name: str
    passed: bool
    summary: str
    metrics: dict[str, float]
    cached: bool
    seconds: float


def stage_key(modules: tuple[str, ...], *parts: object) -> str:
    """A hash of everything a stage's output depends on: its settings and the source of the named
    modules that generate its data and train it, so editing a recipe rebuilds what it made."""
    import hashlib
    import importlib
    import inspect

    digest = hashlib.blake2b(digest_size=10)
    for name in modules:
        digest.update(inspect.getsource(importlib.import_module(name)).encode())
    digest.update(json.dumps([str(p) for p in parts], sort_keys=True).encode())
    return digest.hexdigest()


BASE_CODE = ("diffscope.corpus.world", "diffscope.organisms.training")
FINETUNE_CODE = (*BASE_CODE, "diffscope.organisms.datasets")
PERTURB_CODE = (*BASE_CODE, "diffscope.organisms.perturb")


def done_record(folder: Path, key: str) -> dict | None:
    """The finished stage's record if it was built with the same key; else None (rebuild)."""
    marker = folder / "DONE.json"
    if not marker.exists():
        return None
    record = json.loads(marker.read_text())
    return record if record.get("key") == key else None


def fresh_stage_dir(folder: Path) -> Path:
    """A clean temporary folder beside `folder`, renamed onto it by `finish_stage`."""
    tmp = folder.with_name(f".{folder.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def finish_stage(tmp: Path, folder: Path, record: dict) -> None:
    write_json(tmp / "DONE.json", record)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def load_zoo_tokenizer(root: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(root / "base" / "model")


def load_zoo_model(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@contextmanager
def zoo_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on a zoo folder so two processes never build the same stage; the
    second waits, then finds the stages built and reuses them."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def done_record_key(root: Path) -> str:
    """The key of the built base model (fine-tunes depend on it: a new base rebuilds them)."""
    marker = root / "base" / "DONE.json"
    return json.loads(marker.read_text()).get("key", "") if marker.exists() else ""
