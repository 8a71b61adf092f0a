"""Paired activation sources for crosscoder training: in memory, or sharded on disk.

An `ActivationSource` is anything with `__len__` and `batch(indices) -> Tensor [B, 2, d]` (base,
fine-tuned). It may also offer `mean_norms() -> Tensor [2]` (mean L2 norm per model) so the trainer
need not estimate it.

On disk, activations live in a folder of safetensors shards `shard_00000.safetensors`, ... each
holding one tensor `acts` [n, 2, d] (bf16 or fp32) plus its own statistics (`sum` [2, d] and
`sum_norm` [2], float64), and a `manifest.json` with the totals (count, mean, mean norm per model).
Shards are read through a copy-on-write memory map, so a random batch only touches its rows.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
from safetensors import safe_open

from diffscope.paths import save_tensors, write_json

MANIFEST = "manifest.json"
SHARD_PATTERN = "shard_{:05d}.safetensors"
_DTYPES = {"BF16": torch.bfloat16, "F32": torch.float32, "F16": torch.float16}


@runtime_checkable
class ActivationSource(Protocol):
    """Random access to N paired activation rows."""

    def __len__(self) -> int: ...

    def batch(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor: ...


def _check_pairs(x: torch.Tensor) -> None:
    if x.ndim != 3 or x.shape[1] != 2:
        raise ValueError(f"paired activations must have shape [N, 2, d], got {tuple(x.shape)}")


class TensorActivations:
    """An in-memory [N, 2, d] tensor as an activation source."""

    def __init__(self, tensor: torch.Tensor) -> None:
        _check_pairs(tensor)
        self.tensor = tensor

    def __len__(self) -> int:
        return self.tensor.shape[0]

    @property
    def d_model(self) -> int:
        return self.tensor.shape[2]

    def batch(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        return self.tensor[torch.as_tensor(indices, dtype=torch.long)]


def _mmap_tensor(path: Path, name: str) -> torch.Tensor:
    """Memory-map one tensor of a safetensors file without reading it."""
    with open(path, "rb") as fh:
        header_len = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(header_len))
    info = header[name]
    begin, end = info["data_offsets"]
    start = 8 + header_len + begin
    size = os.path.getsize(path)
    storage = torch.UntypedStorage.from_file(str(path), shared=False, nbytes=size)
    # torch's stubs type UntypedStorage.from_file as returning _StorageBase | TypedStorage
    raw = torch.empty(0, dtype=torch.uint8).set_(storage)  # type: ignore[arg-type]
    return raw[start : start + end - begin].view(_DTYPES[info["dtype"]]).view(info["shape"])


class ShardedActivations:
    """A folder written by `write_activation_shards`, as an activation source."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        manifest_path = self.directory / MANIFEST
        if not manifest_path.exists():
            raise FileNotFoundError(f"{manifest_path} missing: not a finished shard folder")
        self.manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        self.shards = [
            _mmap_tensor(self.directory / s["file"], "acts") for s in self.manifest["shards"]
        ]
        counts = torch.tensor([s.shape[0] for s in self.shards], dtype=torch.long)
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        self._n = int(self.offsets[-1])

    def __len__(self) -> int:
        return self._n

    @property
    def d_model(self) -> int:
        return int(self.manifest["d_model"])

    def mean_norms(self) -> torch.Tensor:
        """Mean L2 norm of each model's activations [2], from the stored statistics."""
        return torch.tensor(self.manifest["mean_norm"], dtype=torch.float64)

    def mean(self) -> torch.Tensor:
        """Mean activation [2, d] over all rows, from the stored statistics."""
        return torch.tensor(self.manifest["mean"], dtype=torch.float64)

    def batch(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        idx = torch.as_tensor(indices, dtype=torch.long)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self._n):
            raise IndexError(f"row index out of range for {self._n} rows")
        shard = torch.searchsorted(self.offsets, idx, right=True) - 1
        out = torch.empty((idx.numel(), 2, self.d_model), dtype=self.shards[0].dtype)
        for s in shard.unique().tolist():
            sel = (shard == s).nonzero().squeeze(1)
            out[sel] = self.shards[s][idx[sel] - self.offsets[s]]
        return out


def _shard_complete(path: Path, rows: int, d_model: int, dtype: torch.dtype) -> bool:
    """Whether `path` is a finished shard with exactly `rows` rows of the expected layout."""
    if not path.exists():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            acts = f.get_slice("acts")
            shape = list(acts.get_shape())
            ok_dtype = _DTYPES.get(acts.get_dtype()) == dtype
            return ok_dtype and shape == [rows, 2, d_model] and "sum_norm" in set(f.keys())
    except Exception:  # a truncated or foreign file is simply rewritten
        return False


def write_activation_shards(
    batches: Iterable[torch.Tensor],
    out_dir: str | os.PathLike[str],
    *,
    shard_tokens: int = 65_536,
    dtype: torch.dtype = torch.bfloat16,
) -> ShardedActivations:
    """Write paired activations [B, 2, d] from `batches` as shards in `out_dir`.

    Every shard and the manifest are written atomically. Rerunning with the same stream resumes:
    shards already complete on disk are skipped (their rows are consumed from the stream, not
    rewritten). The manifest records counts, mean activation and mean norm per model.
    """
    if dtype not in _DTYPES.values():
        raise ValueError(f"unsupported shard dtype {dtype}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, object]] = []
    total_sum: torch.Tensor | None = None
    total_norm = torch.zeros(2, dtype=torch.float64)
    d_model: int | None = None
    pending: list[torch.Tensor] = []
    pending_rows = 0

    def flush(rows: torch.Tensor) -> None:
        nonlocal total_sum, total_norm
        path = out / SHARD_PATTERN.format(len(entries))
        assert d_model is not None
        if _shard_complete(path, rows.shape[0], d_model, dtype):
            with safe_open(str(path), framework="pt") as f:
                s, sn = f.get_tensor("sum"), f.get_tensor("sum_norm")
        else:
            stored = rows.to(dtype).contiguous()
            wide = stored.double()
            s, sn = wide.sum(0), wide.norm(dim=-1).sum(0)
            save_tensors(path, {"acts": stored, "sum": s, "sum_norm": sn})
        total_sum = s if total_sum is None else total_sum + s
        total_norm = total_norm + sn
        entries.append({"file": path.name, "rows": int(rows.shape[0])})

    for chunk in batches:
        _check_pairs(chunk)
        if d_model is None:
            d_model = chunk.shape[2]
        elif chunk.shape[2] != d_model:
            raise ValueError(f"d_model changed from {d_model} to {chunk.shape[2]} mid-stream")
        pending.append(chunk.detach().cpu())
        pending_rows += chunk.shape[0]
        while pending_rows >= shard_tokens:
            joined = torch.cat(pending)
            flush(joined[:shard_tokens])
            rest = joined[shard_tokens:]
            pending, pending_rows = ([rest] if rest.shape[0] else []), rest.shape[0]
    if pending_rows:
        flush(torch.cat(pending))
    if d_model is None or total_sum is None:
        raise ValueError("no activations to write")
    n = sum(int(e["rows"]) for e in entries)  # type: ignore[call-overload]
    manifest = {
        "d_model": d_model,
        "dtype": str(dtype).removeprefix("torch."),
        "rows": n,
        "shard_tokens": shard_tokens,
        "shards": entries,
        "mean": (total_sum / n).tolist(),
        "mean_norm": (total_norm / n).tolist(),
    }
    write_json(out / MANIFEST, manifest)
    return ShardedActivations(out)


def sample_stats(
    acts: ActivationSource, sample: int, generator: torch.Generator, batch_size: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean L2 norm per model [2], mean activation [2, d]) over `sample` rows drawn at random."""
    n = len(acts)
    idx = torch.randperm(n, generator=generator)[: min(sample, n)].sort().values
    norm_sum = torch.zeros(2, dtype=torch.float64)
    act_sum: torch.Tensor | float = 0.0
    for start in range(0, idx.numel(), batch_size):
        rows = acts.batch(idx[start : start + batch_size]).double()
        norm_sum += rows.norm(dim=-1).sum(0)
        act_sum = act_sum + rows.sum(0)
    assert isinstance(act_sum, torch.Tensor)
    return norm_sum / idx.numel(), act_sum / idx.numel()
