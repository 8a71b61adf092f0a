"""A user's own pair with its ground truth (`--base/--finetuned/--adapter` with `--truth FILE`).

The truth file is YAML in the organism schema (`diffscope.organisms.schema`), in either of two
shapes:

- a whole organism (name, kind, type, base, finetuned or adapter, ground_truth, ...), where the
  command line's `--base/--finetuned/--adapter`, when given, replace the file's models; or
- the ground truth alone (description, key_facts, optional synonyms and neurons), with optional
  top-level `name` and `type` beside it; the models then come from the command line.

`user_organism` builds the `Organism`; `register` writes it as `FOLDER/NAME.yaml` and adds FOLDER
to `DIFFSCOPE_ORGANISMS` for this process (and the server processes it starts), so the benchmark
knows the pair by name like any organism. A benchmark keeps its user organisms in `OUT/organisms`,
and `use_folder_organisms(out)` makes them known again when the folder is graded or resumed.
Only the benchmark and the graders read the ground truth; the investigator is served the pair.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from diffscope.organisms.schema import GroundTruth, Organism
from diffscope.paths import write_text

FOLDER = "organisms"
GROUND_TRUTH_KEYS = frozenset(GroundTruth.model_fields)
DEFAULT_TYPE = "custom"


class TruthError(ValueError):
    """The truth file or the pair flags cannot make an organism; the message says what to fix."""


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
    )


def organism_name(text: str) -> str:
    """A valid organism name from any text (lowercase letters, digits, `_ . -`)."""
    name = re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-._")
    return name or "user-pair"


def read_truth(path: Path) -> dict[str, Any]:
    """The truth file's mapping; TruthError for a missing file or bad YAML."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise TruthError(f"cannot read --truth {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise TruthError(f"--truth {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise TruthError(
            f"--truth {path} must hold a mapping: an organism (name, type, base, ground_truth, ...) "
            "or a ground truth (description, key_facts)"
        )
    return data


def user_organism(
    truth: Path,
    base: str | None = None,
    finetuned: str | None = None,
    adapter: str | None = None,
) -> Organism:
    """The organism of a truth file and the pair flags (see the module docstring)."""
    data = read_truth(truth)
    if "ground_truth" in data:
        fields = dict(data)
    else:
        extra = sorted(set(data) - GROUND_TRUTH_KEYS - {"name", "type"})
        if extra:
            raise TruthError(
                f"--truth {truth}: unknown key(s) {', '.join(extra)}; a ground-truth file holds "
                f"{', '.join(sorted(GROUND_TRUTH_KEYS))} (plus optional name and type), or give a "
                "whole organism with a ground_truth mapping"
            )
        fields = {
            "name": data.get("name"),
            "type": data.get("type") or DEFAULT_TYPE,
            "ground_truth": {k: v for k, v in data.items() if k in GROUND_TRUTH_KEYS},
        }
    if base:
        fields["base"] = base
    if finetuned or adapter:
        fields.update(finetuned=finetuned, adapter=adapter)
    fields.setdefault("kind", "local")
    fields["name"] = organism_name(str(fields.get("name") or Path(truth).stem))
    if not fields.get("base"):
        raise TruthError(
            f"--truth {truth} names no base model: give --base with --finetuned or --adapter"
        )
    try:
        return Organism.model_validate(fields)
    except ValidationError as exc:
        raise TruthError(
            f"--truth {truth} does not make a valid organism: {_problems(exc)}"
        ) from exc


def register(organism: Organism, folder: Path) -> Path:
    """Write the organism as `folder/NAME.yaml` and make `folder` known to the registry."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{organism.name}.yaml"
    text = yaml.safe_dump(organism.model_dump(mode="json", exclude_none=True), sort_keys=False)
    write_text(path, text)
    add_organism_dir(folder)
    return path


def add_organism_dir(folder: Path) -> None:
    """Add a folder to `DIFFSCOPE_ORGANISMS` for this process (once)."""
    resolved = str(Path(folder).resolve())
    parts = [p for p in os.environ.get("DIFFSCOPE_ORGANISMS", "").split(os.pathsep) if p.strip()]
    if resolved not in (str(Path(p).expanduser().resolve()) for p in parts):
        os.environ["DIFFSCOPE_ORGANISMS"] = os.pathsep.join([*parts, resolved])


def use_folder_organisms(out: Path) -> None:
    """Make the user organisms a benchmark folder keeps (`OUT/organisms`) known, if any."""
    folder = Path(out) / FOLDER
    if folder.is_dir() and any(folder.glob("*.yaml")):
        add_organism_dir(folder)
