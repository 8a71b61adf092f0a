"""Where the real-model zoo lives and what every stage of it shares: its folder, the key of its
base (the GGUF file's sha256), the converted base folder once built, and loading the base.

Kept apart from `build` so that the registry (which resolves `smol:` references) and the
perturbation stage can use it without importing the build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from diffscope.paths import home

ZOO = "smol"
PERTURB_CODE = (
    "diffscope.organisms.smol.data",
    "diffscope.organisms.smol.perturb",
    "diffscope.organisms.perturb",
)


def smol_root() -> Path:
    """The real-model zoo's folder, `$DIFFSCOPE_HOME/zoo/smol`."""
    return home() / "zoo" / ZOO


def built_base_folder() -> Path | None:
    """The converted SmolLM2 folder when the zoo's base stage is built, else None (no work)."""
    record = _done_record(smol_root() / "base")
    if record is None:
        return None
    from diffscope.models.gguf import gguf_root

    folder = gguf_root() / str(record.get("sha256", ""))
    return folder if (folder / "config.json").is_file() else None


def _done_record(folder: Path) -> dict | None:
    marker = folder / "DONE.json"
    return json.loads(marker.read_text(encoding="utf-8")) if marker.exists() else None


def base_key() -> str:
    """The sha256 of the SmolLM2 GGUF file (memoised): every smol stage key starts from it."""
    from diffscope.models.gguf import file_hash, require_smollm2

    return file_hash(require_smollm2())


def load_base(folder: Path) -> tuple[Any, Any]:
    """The base model (float32, eval) and its tokenizer."""
    from transformers import AutoTokenizer, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder)
