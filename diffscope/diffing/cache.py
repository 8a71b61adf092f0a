"""The one content-addressed artifact cache every expensive primitive goes through.

An entry's key is a hash of both models' weights fingerprint, the artifact kind, the kind's format
version (in `FORMATS`; bump it when what a kind stores changes) and the method config. A file entry
is one safetensors file (tensors plus string metadata, never a pickle) written atomically (temp
file + rename, `diffscope.paths.save_tensors`); a folder entry (crosscoder activations and
training) is a directory whose finished state its owner marks with a file written last. Entries
live under `$DIFFSCOPE_HOME/artifacts/FINGERPRINT/` and are memoised in memory once loaded.

Integrity: every file entry has a manifest beside it (`KIND-KEY.manifest.json`: each file's size
and sha256), written after the entry; a folder entry its owner seals the same way
(`checksums.json` inside it). Loading checks the manifest first. A truncated or altered file, a
missing manifest (an entry written before manifests existed, or cut short between the two
writes), a file the loader cannot read, or a value holding NaN/inf is *set aside* (renamed to
`NAME.corrupt-TIMESTAMP`, kept for inspection) and recomputed, and the cache records one warning
line (`ArtifactCache.warnings`, `on_warning`) that the tool layer adds to the call's answer. A
freshly computed value that is not finite is never stored: `NonFiniteArtifact` names the artifact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import torch
from pydantic import BaseModel

from diffscope.paths import home, write_json

T = TypeVar("T")
log = logging.getLogger("diffscope.cache")

FORMATS: dict[str, int] = {
    "neurons": 2,  # 2: one exemplar per window
    "mining": 3,  # 2: predicted-mass shift per token; 3: one safetensors file, JSON in metadata
    "meandiff": 1,
    "clusters": 1,  # in memory only
    "acts": 1,  # crosscoder activation shards
    "crosscoder": 1,  # crosscoder training + analysis (the trainer has its own version too)
}
MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
SEAL = "checksums.json"
"""A folder entry's manifest (inside the folder), written by `ArtifactCache.seal`."""
CORRUPT = ".corrupt-"
_CHUNK = 1 << 20


class NonFiniteArtifact(ValueError):
    """An artifact's values hold NaN or inf: an error naming the artifact, never stored."""


def config_key(*parts: BaseModel | dict | str) -> str:
    """A short stable hash of configs (pydantic models, dicts, strings)."""
    blob = json.dumps(
        [p.model_dump() if isinstance(p, BaseModel) else p for p in parts],
        sort_keys=True,
        default=str,
    )
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


def pair_root(fingerprint: str) -> Path:
    """Where a pair's artifacts live by default: `$DIFFSCOPE_HOME/artifacts/FINGERPRINT`."""
    return home() / "artifacts" / fingerprint


# --- checksums ------------------------------------------------------------------------------


def file_record(path: Path) -> dict[str, Any]:
    """A file's size and sha256, as a manifest records them."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def write_manifest(target: Path, files: Iterable[Path], **info: Any) -> Path:
    """Write a manifest at `target` recording every file of `files` (names relative to its
    folder), atomically."""
    base = target.parent
    records = {p.relative_to(base).as_posix(): file_record(p) for p in sorted(files)}
    return write_json(
        target,
        {
            "manifest_version": MANIFEST_VERSION,
            **info,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": records,
        },
    )


def check_manifest(target: Path) -> str | None:
    """None when every file the manifest at `target` lists is there with its size and sha256;
    otherwise what is wrong (one line)."""
    if not target.is_file():
        return f"it has no manifest ({target.name}): written before checksums, or cut short"
    try:
        data = json.loads(target.read_text(encoding="utf-8"))
        files = data["files"]
        if data.get("manifest_version") != MANIFEST_VERSION or not isinstance(files, dict):
            return f"its manifest {target.name} has an unknown format"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"its manifest {target.name} cannot be read ({type(exc).__name__})"
    for name, want in files.items():
        path = target.parent / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != want.get("bytes"):
            return f"{name} is {size} bytes, its manifest says {want.get('bytes')} (truncated?)"
        if file_record(path)["sha256"] != want.get("sha256"):
            return f"{name} does not match its sha256 checksum (altered)"
    return None


def non_finite(
    tensors: Mapping[str, torch.Tensor], allow_neg_inf: Iterable[str] = ()
) -> str | None:
    """None when every floating tensor is finite; otherwise which one holds NaN/inf and how many.

    Tensors named in `allow_neg_inf` may hold -inf (an "empty slot" sentinel), never NaN or +inf."""
    allowed = set(allow_neg_inf)
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            continue
        nan = int(torch.isnan(tensor).sum())
        inf = int(torch.isposinf(tensor).sum())
        if name not in allowed:
            inf += int(torch.isneginf(tensor).sum())
        if nan or inf:
            return f"{name} holds {nan} NaN and {inf} inf of {tensor.numel()} values"
    return None


def set_aside(paths: Iterable[Path]) -> list[Path]:
    """Rename each existing path to `NAME.corrupt-TIMESTAMP` beside it; the new paths."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    moved = []
    for path in paths:
        if path.exists():
            target = path.with_name(f"{path.name}{CORRUPT}{stamp}")
            os.replace(path, target)
            moved.append(target)
    return moved


class ArtifactCache:
    """Content-addressed entries of one pair (identified by its weights `fingerprint`).

    `warnings` lists every entry found damaged and rebuilt (one line each); `on_warning`, when
    set, is called with each line as it happens (the tool layer adds it to the call's answer)."""

    def __init__(self, fingerprint: str, root: Path | None = None) -> None:
        self.fingerprint = fingerprint
        self.root = root if root is not None else pair_root(fingerprint)
        self._memo: dict[str, Any] = {}
        self.warnings: list[str] = []
        self.on_warning: Callable[[str], None] | None = None

    def key(self, kind: str, *configs: BaseModel | dict | str) -> str:
        """The entry key: hash of (fingerprint, kind, format version, configs)."""
        if kind not in FORMATS:
            raise KeyError(f"unknown artifact kind {kind!r}; add it to FORMATS")
        return config_key(
            {"fingerprint": self.fingerprint, "kind": kind, "format": FORMATS[kind]}, *configs
        )

    def path(
        self, kind: str, *configs: BaseModel | dict | str, suffix: str = ".safetensors"
    ) -> Path:
        """The entry's path: ROOT/KIND-KEY.safetensors (a folder entry: `suffix=""`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root / f"{kind}-{self.key(kind, *configs)}{suffix}"

    def folder(self, kind: str, *configs: BaseModel | dict | str, name: str = "") -> Path:
        """A folder entry ROOT/crosscoder/NAME-KEY (created by its owner)."""
        base = self.root / "crosscoder"
        base.mkdir(parents=True, exist_ok=True)
        return base / f"{name or kind}-{self.key(kind, *configs)}"

    @staticmethod
    def manifest_path(path: Path) -> Path:
        """A file entry's manifest: KIND-KEY.manifest.json beside KIND-KEY.safetensors."""
        return path.with_name(path.name.removesuffix(".safetensors") + MANIFEST_SUFFIX)

    def warn(self, message: str) -> None:
        """Record (and log) one warning line for whoever uses the cache."""
        log.warning("%s", message)
        self.warnings.append(message)
        if self.on_warning is not None:
            try:
                self.on_warning(message)
            except Exception:  # a listener must never break a computation
                log.debug("cache warning listener failed", exc_info=True)

    def reject(self, kind: str, paths: Iterable[Path], problem: str, action: str) -> list[Path]:
        """Set a damaged entry's files aside and warn, saying what is done about it."""
        paths = list(paths)
        moved = set_aside(paths)
        where = paths[0].name if paths else kind
        kept = f"; set aside as {moved[0].name}" if moved else ""
        self.warn(f"cached {kind} artifact {where} was damaged ({problem}){kept}; {action}")
        return moved

    def get(
        self,
        kind: str,
        configs: tuple[BaseModel | dict | str, ...],
        compute: Callable[[Path], T],
        save: Callable[[Path, T], object],
        load: Callable[[Path], T],
        check: Callable[[T], str | None] | None = None,
    ) -> T:
        """The entry: from memory, else loaded from disk, else `compute(path)` then `save`d.

        `save(path, value)` must write atomically (`paths.save_tensors` does); `compute` gets the
        entry's path so it can keep resumable partial state beside it. `check(value)` says what is
        wrong with a value (NaN, inf) or None: a loaded value that fails it is rebuilt like a
        damaged file; a computed one raises `NonFiniteArtifact` and is not stored."""
        path = self.path(kind, *configs)
        memo = str(path)
        if memo in self._memo:
            return self._memo[memo]
        value = self._load_verified(kind, path, load, check) if path.exists() else None
        if value is None:
            value = compute(path)
            problem = check(value) if check is not None else None
            if problem is not None:
                raise NonFiniteArtifact(
                    f"the {kind} artifact of this pair ({path.name}) is not finite: {problem}; "
                    "the models give NaN or inf on the probe corpus (check their weights and "
                    "dtype); it was not cached"
                )
            self._store(kind, path, value, save)
        self._memo[memo] = value
        return value

    def _store(self, kind: str, path: Path, value: T, save: Callable[[Path, T], object]) -> None:
        """Save beside the entry, write the manifest of those bytes, then rename them into place:
        a reader never meets the new file without its manifest."""
        staged = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.staged")
        try:
            save(staged, value)
            record = file_record(staged)
            write_json(
                self.manifest_path(path),
                {
                    "manifest_version": MANIFEST_VERSION,
                    "kind": kind,
                    "format": FORMATS[kind],
                    "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
                    "files": {path.name: record},
                },
            )
            os.replace(staged, path)
        finally:
            staged.unlink(missing_ok=True)

    def _load_verified(
        self,
        kind: str,
        path: Path,
        load: Callable[[Path], T],
        check: Callable[[T], str | None] | None,
    ) -> T | None:
        """The entry loaded after its checksums pass, or None after setting a damaged one aside."""
        manifest = self.manifest_path(path)
        problem = check_manifest(manifest)
        value: T | None = None
        if problem is None:
            try:
                value = load(path)
            except Exception as exc:  # a file that passes its checksum but cannot be read
                problem = f"it cannot be read: {type(exc).__name__}: {exc}"
        if value is not None and check is not None:
            problem = check(value)
        if problem is None:
            return value
        self.reject(kind, [path, manifest], problem, "recomputed it")
        return None

    def seal(self, kind: str, folder: Path) -> Path:
        """Record the checksums of every file of a finished folder entry (`checksums.json`)."""
        files = [p for p in folder.rglob("*") if p.is_file() and _sealable(p, folder)]
        return write_manifest(folder / SEAL, files, kind=kind, format=FORMATS[kind])

    def check_folder(self, kind: str, folder: Path, *, adopt: bool = True) -> str | None:
        """None when a finished folder entry matches its seal, else what is wrong. A folder from
        before seals existed is sealed as found (`adopt`) once every safetensors file in it is
        whole and every JSON file parses (rebuilding a crosscoder takes minutes to hours)."""
        if adopt and not (folder / SEAL).exists():
            problem = _folder_structure(folder)
            if problem is None:
                self.seal(kind, folder)
            return problem
        return check_manifest(folder / SEAL)

    def memo(
        self, kind: str, configs: tuple[BaseModel | dict | str, ...], compute: Callable[[], T]
    ) -> T:
        """A value kept in memory only (cheap given other entries), under the same keys."""
        key = f"{kind}:{self.key(kind, *configs)}"
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]


def _sealable(path: Path, folder: Path) -> bool:
    name = path.name
    return (
        name != SEAL
        and not (name.startswith(".") and name.endswith(".tmp"))
        and (CORRUPT not in name)
    )


def safetensors_problem(path: Path) -> str | None:
    """None when a safetensors file is whole (its size is what its header says), else why not."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{path.name} is {size} bytes, too short for a safetensors header"
            length = int.from_bytes(head, "little")
            if length > size - 8:
                return f"{path.name} is {size} bytes, shorter than its header (truncated)"
            header = json.loads(fh.read(length))
    except (OSError, ValueError) as exc:
        return f"{path.name} cannot be read ({type(exc).__name__})"
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    want = 8 + length + max(ends, default=0)
    if size != want:
        return f"{path.name} is {size} bytes, its header says {want} (truncated or padded)"
    return None


def _folder_structure(folder: Path) -> str | None:
    """A cheap check of an unsealed folder entry: whole safetensors files, parseable JSON."""
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or not _sealable(path, folder):
            continue
        if path.suffix == ".safetensors":
            problem = safetensors_problem(path)
            if problem is not None:
                return problem
        elif path.suffix == ".json":
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                return f"{path.name} cannot be read ({type(exc).__name__})"
    return None
