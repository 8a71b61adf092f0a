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
    """What a built zoo entry reports: its behavioural check (`passed`, the one-line `reason`, the
    `figures` it compared and its `margin`: min over conditions of measured / required effect,
    None for the base) and whether it came from the cache."""

    name: str
    passed: bool
    summary: str
    metrics: dict[str, float | None]
    cached: bool
    seconds: float
    margin: float | None = None

    @property
    def figures(self) -> dict[str, float | None]:
        return self.metrics

    @property
    def reason(self) -> str:
        return self.summary


def stage_key(modules: tuple[str, ...], *parts: object) -> str:
    """A hash of everything a stage's output depends on: its settings, the source of the named
    modules that generate its data and train it, and the data files they name in `STAGE_DATA`
    (the world corpus's `world.json`), so editing a recipe rebuilds what it made and nothing else."""
    import hashlib
    import importlib
    import inspect

    digest = hashlib.blake2b(digest_size=10)
    for name in dict.fromkeys(modules):
        module = importlib.import_module(name)
        digest.update(name.encode())
        digest.update(inspect.getsource(module).encode())
        for path in getattr(module, "STAGE_DATA", ()):
            digest.update(Path(path).read_bytes())
    digest.update(json.dumps([str(p) for p in parts], sort_keys=True).encode())
    return digest.hexdigest()


BASE_CODE = ("diffscope.corpus.world", "diffscope.organisms.training")
"""What the base model depends on; a fine-tune adds its recipe's modules (`recipes.recipe_modules`)."""
PERTURB_CODE = (*BASE_CODE, "diffscope.organisms.perturb")
CHECK_FILE = "check.json"
"""Beside each built zoo model: its last behavioural check (passed, margin, figures, reason)."""


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
    if "passed" in record:
        check = {k: record.get(k) for k in ("passed", "margin", "summary", "metrics", "key")}
        check["reason"] = check.pop("summary")
        check["figures"] = check.pop("metrics")
        write_json(tmp / CHECK_FILE, check)
    write_json(tmp / "DONE.json", record)
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)


def load_zoo_tokenizer(root: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(root / "base" / "model")


def load_zoo_model(path: Path):
    """A built zoo model in float32, in eval mode (without transformers' per-load progress bar)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
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


def pick_organisms(organisms: list, only, what: str) -> list:
    """`organisms` limited to the names in `only` (all of them when `only` is empty); a ValueError
    naming the unknown ones and listing the known `what` (e.g. "toy organisms")."""
    if not only:
        return organisms
    known = {o.name for o in organisms}
    unknown = [n for n in only if n not in known]
    if unknown:
        raise ValueError(
            f"not {what}: {', '.join(unknown)}; {what} are: {', '.join(sorted(known))}"
        )
    return [o for o in organisms if o.name in set(only)]


def done_record_key(root: Path) -> str:
    """The key of the built base model (fine-tunes depend on it: a new base rebuilds them)."""
    marker = root / "base" / "DONE.json"
    return json.loads(marker.read_text()).get("key", "") if marker.exists() else ""
