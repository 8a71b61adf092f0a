"""The one content-addressed artifact cache every expensive primitive goes through.

An entry's key is a hash of both models' weights fingerprint, the artifact kind, the kind's format
version (in `FORMATS`; bump it when what a kind stores changes) and the method config. A file entry
is one safetensors file (tensors plus string metadata, never a pickle) written atomically (temp
file + rename, `diffscope.paths.save_tensors`); a folder entry (crosscoder activations and
training) is a directory whose finished state its owner marks with a file written last. Entries
live under `$DIFFSCOPE_HOME/artifacts/FINGERPRINT/` and are memoised in memory once loaded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from diffscope.paths import home

T = TypeVar("T")

FORMATS: dict[str, int] = {
    "neurons": 2,  # 2: one exemplar per window
    "mining": 3,  # 2: predicted-mass shift per token; 3: one safetensors file, JSON in metadata
    "meandiff": 1,
    "clusters": 1,  # in memory only
    "acts": 1,  # crosscoder activation shards
    "crosscoder": 1,  # crosscoder training + analysis (the trainer has its own version too)
}


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


class ArtifactCache:
    """Content-addressed entries of one pair (identified by its weights `fingerprint`)."""

    def __init__(self, fingerprint: str, root: Path | None = None) -> None:
        self.fingerprint = fingerprint
        self.root = root if root is not None else pair_root(fingerprint)
        self._memo: dict[str, Any] = {}

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

    def get(
        self,
        kind: str,
        configs: tuple[BaseModel | dict | str, ...],
        compute: Callable[[Path], T],
        save: Callable[[Path, T], object],
        load: Callable[[Path], T],
    ) -> T:
        """The entry: from memory, else loaded from disk, else `compute(path)` then `save`d.

        `save(path, value)` must write atomically (`paths.save_tensors` does); `compute` gets the
        entry's path so it can keep resumable partial state beside it."""
        path = self.path(kind, *configs)
        memo = str(path)
        if memo in self._memo:
            return self._memo[memo]
        if path.exists():
            value = load(path)
        else:
            value = compute(path)
            save(path, value)
        self._memo[memo] = value
        return value

    def memo(
        self, kind: str, configs: tuple[BaseModel | dict | str, ...], compute: Callable[[], T]
    ) -> T:
        """A value kept in memory only (cheap given other entries), under the same keys."""
        key = f"{kind}:{self.key(kind, *configs)}"
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]
