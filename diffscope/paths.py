"""Where diffscope keeps its cache, and atomic writers for everything it stores there."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def home() -> Path:
    """The cache root: `$DIFFSCOPE_HOME`, else `~/.cache/diffscope`."""
    root = os.environ.get("DIFFSCOPE_HOME") or os.path.join(Path.home(), ".cache", "diffscope")
    path = Path(root).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def current_umask() -> int:
    """The process's umask (read from /proc where it can be, else set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; rename it onto `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp (and some writers, e.g. safetensors) make the file 0600; the umask decides
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_json(target: str | os.PathLike[str], data: Any) -> Path:
    """Write `data` as indented JSON to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str), encoding="utf-8")
    return Path(target)


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def save_tensors(
    target: str | os.PathLike[str], tensors: dict[str, Any], metadata: dict[str, str] | None = None
) -> Path:
    """Save a dict of torch tensors as safetensors, atomically."""
    from safetensors.torch import save_file

    with atomic_path(target) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    return Path(target)
