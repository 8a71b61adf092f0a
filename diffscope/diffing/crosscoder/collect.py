"""Paired activations of a model pair for crosscoders: the residual stream after block `layer` of
both models on the same token windows (first position of every window dropped: it carries the
BOS-like outsized norm), written as resumable safetensors shards, plus `rows.safetensors` holding
the windows and, for every row, its (window, position) so any activation can be decoded to text."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from diffscope import progress as pg
from diffscope.diffing.crosscoder.activations import (
    MANIFEST,
    SHARD_PATTERN,
    ShardedActivations,
    _shard_complete,
    write_activation_shards,
)
from diffscope.models.hooks import capture
from diffscope.models.pair import ModelPair
from diffscope.paths import save_tensors

ROWS_FILE = "rows.safetensors"


def _shard_plan(total: int, shard_tokens: int) -> list[tuple[int, int]]:
    """(first row, row count) of every shard `write_activation_shards` will cut."""
    return [(s, min(shard_tokens, total - s)) for s in range(0, total, shard_tokens)]


def _done_rows(
    out: Path, total: int, shard_tokens: int, d_model: int, dtype: torch.dtype
) -> torch.Tensor:
    """A bool mask [total] of rows that lie in shards already complete on disk."""
    done = torch.zeros(total, dtype=torch.bool)
    for i, (start, rows) in enumerate(_shard_plan(total, shard_tokens)):
        if _shard_complete(out / SHARD_PATTERN.format(i), rows, d_model, dtype):
            done[start : start + rows] = True
    return done


@torch.no_grad()
def paired_residuals(pair: ModelPair, windows: torch.Tensor, layer: int) -> torch.Tensor:
    """Residual after block `layer` of both models on equal-length windows [B, T], first position
    dropped: [B * (T - 1), 2, d] float32 (row order: window-major, then position 1..T-1)."""
    layer = pair.check_layer(layer)
    batch = pair.batch_from_ids(windows)
    got = []
    for which in ("base", "finetuned"):
        model = pair.model(which)
        with capture(model, pair.family, resid=[layer]) as cap:
            model(**batch.model_inputs())
        got.append(cap.resid[layer][:, 1:].float().cpu())
    stacked = torch.stack(got, dim=2)  # [B, T-1, 2, d]
    return stacked.reshape(-1, 2, stacked.shape[-1])


def default_dtype(d_model: int) -> torch.dtype:
    """Shard storage: float32 for small models (exact, cheap), bfloat16 from d_model 512 up."""
    return torch.float32 if d_model < 512 else torch.bfloat16


def collect_activations(
    pair: ModelPair,
    windows: torch.Tensor,
    layer: int,
    out_dir: str | Path,
    *,
    batch_size: int = 16,
    shard_tokens: int = 65_536,
    dtype: torch.dtype | None = None,
    progress: pg.Show = True,
) -> ShardedActivations:
    """Paired residual activations after block `layer` over `windows` [N, T], written as shards.

    Resumable: windows whose rows all lie in shards already complete on disk are not run through
    the models again. A finished folder (manifest present) is returned as is.
    """
    if windows.ndim != 2 or windows.shape[1] < 2:
        raise ValueError(f"windows must be [N, T] with T >= 2, got {tuple(windows.shape)}")
    layer = pair.check_layer(layer)
    out = Path(out_dir)
    if (out / MANIFEST).exists() and (out / ROWS_FILE).exists():
        return ShardedActivations(out)
    out.mkdir(parents=True, exist_ok=True)
    n, t = windows.shape
    per = t - 1
    total = n * per
    d_model = pair.d_model
    dtype = dtype or default_dtype(d_model)
    rows = torch.arange(total)
    save_tensors(
        out / ROWS_FILE,
        {
            "tokens": windows.long().cpu().contiguous(),
            "window": rows // per,
            "position": 1 + rows % per,
        },
        metadata={"layer": str(layer)},
    )
    done = _done_rows(out, total, shard_tokens, d_model, dtype)
    bar: pg.Progress[None] = pg.progress(n, f"activations L{layer}", show=progress)

    def stream() -> Iterator[torch.Tensor]:
        for start in range(0, n, batch_size):
            chunk = windows[start : start + batch_size]
            first, last = start * per, (start + chunk.shape[0]) * per
            if bool(done[first:last].all()):
                yield torch.zeros(last - first, 2, d_model)
            else:
                yield paired_residuals(pair, chunk, layer)
            bar.advance(chunk.shape[0], message=f"activations at layer {layer}")

    try:
        return write_activation_shards(stream(), out, shard_tokens=shard_tokens, dtype=dtype)
    finally:
        bar.close()
