"""The organism registry: built-in YAML files plus user folders named in `DIFFSCOPE_ORGANISMS`, and
resolution of `zoo:NAME` model references into folders of the offline toy zoo."""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from pydantic import ValidationError

from diffscope.organisms.schema import Organism
from diffscope.paths import home

BUILTIN_DIR = Path(__file__).parent / "builtin"
SMOL_DIR = Path(__file__).parent / "smol"
"""The real-model zoo's organisms (`smol:` references), beside their recipes."""
ZOO_PREFIXES = {"zoo:": "toy", "smol:": "smol"}
DEFAULT_ZOO_SIZE = "small"


class OrganismError(ValueError):
    """An organism could not be found, parsed or resolved; the message says what to do."""


def organism_dirs() -> list[Path]:
    """Built-in folder first, then each folder of `DIFFSCOPE_ORGANISMS` (os.pathsep-separated)."""
    dirs = [BUILTIN_DIR, SMOL_DIR]
    for part in os.environ.get("DIFFSCOPE_ORGANISMS", "").split(os.pathsep):
        if part.strip():
            path = Path(part).expanduser()
            if not path.is_dir():
                raise OrganismError(
                    f"DIFFSCOPE_ORGANISMS names {part!r}, which is not a folder; fix the variable"
                )
            dirs.append(path)
    return dirs


def load_organism_file(path: Path) -> Organism:
    """Parse one organism YAML file, with one clear error for bad YAML or a bad schema."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise OrganismError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise OrganismError(f"{path} must hold a mapping (name, kind, type, base, ...)")
    try:
        return Organism.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise OrganismError(f"{path} is not a valid organism: {problems}") from exc


def all_organisms() -> dict[str, Organism]:
    """Every known organism by name; user folders override built-ins of the same name."""
    found: dict[str, Organism] = {}
    for folder in organism_dirs():
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            org = load_organism_file(path)
            found[org.name] = org
    return found


def get_organism(name: str) -> Organism:
    """One organism by name, or an error listing the known names."""
    known = all_organisms()
    if name not in known:
        raise OrganismError(
            f"unknown organism {name!r}; known: {', '.join(sorted(known))}. "
            "Add your own as YAML in a folder named by DIFFSCOPE_ORGANISMS"
        )
    return known[name]


def zoo_root(size: str | None = None) -> Path:
    """Folder of the toy zoo of one size under `$DIFFSCOPE_HOME/zoo/`."""
    size = size or os.environ.get("DIFFSCOPE_ZOO_SIZE", DEFAULT_ZOO_SIZE)
    return home() / "zoo" / size


def zoo_of(org: Organism) -> str | None:
    """Which built-in zoo an organism belongs to: "toy", "smol", or None (a user's pair)."""
    for prefix, zoo in ZOO_PREFIXES.items():
        if org.base.startswith(prefix):
            return zoo
    return None


def resolve_smol_ref(ref: str) -> str:
    """Turn `smol:NAME` into the real-model zoo's built folder (`smol:base`: the converted
    SmolLM2), or an OrganismError saying how to build it."""
    from diffscope.organisms.smol.layout import built_base_folder

    name = ref.removeprefix("smol:")
    hint = "run `diffscope zoo build --zoo smol` first"
    if name == "base":
        folder = built_base_folder()
        if folder is None:
            raise OrganismError(f"the real-model zoo's base is not converted yet; {hint}")
        return str(folder)
    built = zoo_root("smol") / name
    if not (built / "DONE.json").exists():
        raise OrganismError(f"the real-model zoo has no built {ref!r} at {built}; {hint}")
    return str(built / "model")


def resolve_ref(ref: str, size: str | None = None) -> str:
    """Turn `zoo:NAME` (the toy zoo of `size`) or `smol:NAME` (the real-model zoo) into the built
    folder (checking it exists); pass other refs through."""
    if ref.startswith("smol:"):
        return resolve_smol_ref(ref)
    if not ref.startswith("zoo:"):
        return ref
    folder = zoo_root(size) / ref.removeprefix("zoo:")
    if not (folder / "DONE.json").exists():
        raise OrganismError(
            f"the toy zoo has no built {ref!r} at {folder}; run `diffscope zoo build"
            f"{' --size ' + size if size else ''}` first"
        )
    return str(folder / "model")


def with_built_ground_truth(org: Organism, size: str | None = None) -> Organism:
    """For perturbation organisms, fill the ground-truth neuron set recorded at build time."""
    if org.kind != "perturbation" or org.finetuned is None:
        return org
    zoo_size = "smol" if org.finetuned.startswith("smol:") else size
    name = org.finetuned.removeprefix("zoo:").removeprefix("smol:")
    record = zoo_root(zoo_size) / name / "perturbation.json"
    if not record.exists():
        return org
    edits = json.loads(record.read_text())["neurons"]
    truth = org.ground_truth.model_copy(
        update={"neurons": [(int(e["layer"]), int(e["neuron"])) for e in edits]}
    )
    return org.model_copy(update={"ground_truth": truth})


def load_pair(org: Organism, size: str | None = None, **kwargs):
    """Load an organism's base/fine-tune pair (resolving zoo references)."""
    from diffscope.models import ModelPair

    pair = ModelPair.load(
        resolve_ref(org.base, size),
        resolve_ref(org.finetuned, size) if org.finetuned else None,
        adapter=resolve_ref(org.adapter, size) if org.adapter else None,
        name=org.name,
        **kwargs,
    )
    pair.chat = org.chat
    return pair
