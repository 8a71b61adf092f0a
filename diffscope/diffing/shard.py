"""Sharded neuron profiling on torch.distributed: the corpus is split across workers, each folds its
share of the batches into the profile's running statistics, and the statistics are merged exactly.

The merge is exact by construction: counts, sums and sums of squares are all-reduced (float64 sums,
so only the order of additions differs from one process), the tail histograms are integer counts
all-reduced over one shared floor (rank 0 sets each neuron's floor from the corpus' first batch,
as one process would, and broadcasts it before the other ranks fold anything), and the exemplar
heaps are all-gathered and cut back to the top k of their union: the top k of a union of top-k
heaps is the top k of the whole corpus (ordered by gap, then by corpus position, so equal gaps
from repeated text resolve as in one process). Shards are contiguous runs of whole batches, so every
batch, and each window's candidate exemplar, is the same as in one process; exemplar positions are
global (a shard's first window index is its offset).

Workers are spawned here (`--workers N`, gloo over local TCP) or launched elsewhere (torchrun or
one command per machine with `--dist-address HOST:PORT` and `--rank`), each opening the pair
itself. A worker saves its finished shard's state beside the cache, so a re-run after a failure
recomputes only the shards that did not finish; the merged profile is written by rank 0 only after
every rank has merged. A worker that dies takes the job down (the others are stopped): no merged
artifact is written, and `ShardError` says to run the command again.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from diffscope import progress as pg
from diffscope.diffing.gapstats import SUMS
from diffscope.diffing.neurons import NeuronProfile, NeuronProfiler, ProfileConfig
from diffscope.models.pair import ModelPair
from diffscope.paths import save_tensors

PairFactory = Callable[[], ModelPair]


class ShardError(RuntimeError):
    """A sharded run failed (a worker died or could not start); nothing merged was written."""


@dataclass(frozen=True)
class Sharding:
    """How to shard: `workers` ranks that each call `open_pair()` (a picklable callable) to load
    the pair; `address` (HOST:PORT of rank 0) with `rank` joins a job launched on several machines
    instead of spawning local workers; `backend` is the activation capture backend."""

    workers: int
    open_pair: PairFactory
    address: str | None = None
    rank: int | None = None
    backend: str = "hooks"
    timeout_s: float = 1800.0
    show: pg.Show = None


@dataclass(frozen=True)
class _Job:
    sharding: Sharding
    windows: torch.Tensor
    config: ProfileConfig
    state_dir: str
    out: str


def shard_ranges(n_batches: int, workers: int) -> list[range]:
    """Contiguous runs of batch indices, one per worker, as even as possible (rank 0 first)."""
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if workers > n_batches:
        raise ValueError(
            f"{workers} workers for {n_batches} batches: give at most {n_batches} workers "
            "(or a larger corpus / smaller batch size)"
        )
    base, extra = divmod(n_batches, workers)
    out, start = [], 0
    for r in range(workers):
        size = base + (1 if r < extra else 0)
        out.append(range(start, start + size))
        start += size
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _state_file(job: _Job, rank: int, pair: ModelPair, batches: range) -> Path:
    """Where a finished shard's state is kept: keyed by pair, config, corpus and shard bounds."""
    digest = hashlib.blake2b(digest_size=10)
    digest.update(pair.fingerprint().encode())
    digest.update(job.config.model_dump_json().encode())
    digest.update(job.windows.numpy().tobytes())
    digest.update(f"{batches.start}:{batches.stop}:{job.sharding.backend}".encode())
    return Path(job.state_dir) / f"shard-{digest.hexdigest()}-r{rank}.safetensors"


def _merge_heaps(prof: NeuronProfiler, world: int) -> None:
    """All-gather every rank's exemplar heaps and keep the top k of their union."""
    k = prof.ex_gap.shape[2]
    gathered = {}
    for name in ("ex_gap", "ex_base", "ex_ft", "ex_at"):
        mine = getattr(prof, name).contiguous()
        parts = [torch.empty_like(mine) for _ in range(world)]
        dist.all_gather(parts, mine)
        gathered[name] = torch.cat(parts, dim=2)
    # ranks in order hold ever later positions: a stable sort gives ties to the earliest one,
    # as one process does
    keep_val, keep = gathered["ex_gap"].sort(dim=2, descending=True, stable=True)
    keep_val, keep = keep_val[..., :k], keep[..., :k]
    prof.ex_gap = keep_val
    for name in ("ex_base", "ex_ft", "ex_at"):
        setattr(prof, name, gathered[name].gather(2, keep))


def _merge(prof: NeuronProfiler, world: int) -> None:
    """Reduce every rank's running statistics into `prof` (on every rank)."""
    for st in prof.state.values():
        for key in SUMS:
            dist.all_reduce(st.sums[key])
        dist.all_reduce(st.hist)
    counts = torch.tensor([prof.n_tokens, prof.n_windows, prof.batches_done], dtype=torch.int64)
    dist.all_reduce(counts)
    prof.n_tokens, prof.n_windows, prof.batches_done = (int(x) for x in counts.tolist())
    _merge_heaps(prof, world)


def run_rank(job: _Job, rank: int, world: int, init_method: str) -> None:
    """One worker: join the group, profile this rank's shard, merge, and (rank 0) write the
    merged profile to `job.out`."""
    cpus = os.cpu_count() or 1
    if job.sharding.address is None:  # local workers share this machine's cores
        torch.set_num_threads(max(1, cpus // world))
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    dist.init_process_group(
        "gloo",
        init_method=init_method,
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=job.sharding.timeout_s),
    )
    try:
        pair = job.sharding.open_pair()
        cfg, windows = job.config, job.windows
        starts = list(range(0, windows.shape[0], cfg.batch_size))
        mine = shard_ranges(len(starts), world)[rank]
        prof = NeuronProfiler(pair, cfg, job.sharding.backend)
        prof.n_windows = starts[mine.start] if len(mine) else windows.shape[0]
        saved = _state_file(job, rank, pair, mine)
        finished = saved.exists()
        if finished:
            from safetensors.torch import load_file

            prof.load_state(load_file(str(saved)))
        todo = [] if finished else [starts[i] for i in mine]
        bar: pg.Progress[None]
        with pg.progress(
            len(mine), f"neuron profile shard {rank + 1}/{world}", show=job.sharding.show
        ) as bar:
            if rank == 0 and todo:  # the first batch sets every neuron's tail floor
                prof.add_batch(windows[todo[0] : todo[0] + cfg.batch_size])
                todo = todo[1:]
                bar.advance()
            floors = torch.stack([st.floor for st in prof.state.values()]).contiguous()
            dist.broadcast(floors, src=0)
            if not finished:
                for st, floor in zip(prof.state.values(), floors, strict=True):
                    st.floor = floor.clone()
            for start in todo:
                prof.add_batch(windows[start : start + cfg.batch_size])
                bar.advance(message=f"profiled {prof.n_tokens} tokens")
        if not finished:
            save_tensors(saved, {k: v.cpu() for k, v in prof.state_tensors().items()})
        _merge(prof, world)
        if rank == 0:
            prof.finish(windows).save(job.out)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _spawned(rank: int, job: _Job, world: int, init_method: str) -> None:
    run_rank(job, rank, world, init_method)


def profile_sharded(
    sharding: Sharding,
    windows: torch.Tensor,
    config: ProfileConfig | None = None,
    *,
    state_dir: str | Path,
) -> NeuronProfile | None:
    """The neuron profile of `windows`, computed by `sharding.workers` ranks and merged exactly
    (None on a rank other than 0 of a job joined through `sharding.address`).

    `state_dir` keeps finished shards' states for a re-run after a failure. Raises ShardError
    when a worker dies or fails; then nothing merged exists."""
    cfg = config or ProfileConfig()
    if windows.ndim != 2 or windows.shape[0] == 0:
        raise ValueError("the corpus is empty: need token windows of shape [N, T] with N > 0")
    if windows.shape[1] <= cfg.skip_first:
        raise ValueError(f"windows must be longer than skip_first={cfg.skip_first} tokens")
    n_batches = -(-windows.shape[0] // cfg.batch_size)
    shard_ranges(n_batches, sharding.workers)  # refuses more workers than batches up front
    Path(state_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="diffscope-merge-") as tmp:
        out = str(Path(tmp) / "profile.safetensors")
        job = _Job(sharding, windows.cpu().contiguous(), cfg, str(state_dir), out)
        if sharding.address is not None:
            rank = sharding.rank if sharding.rank is not None else int(os.environ.get("RANK", -1))
            if not 0 <= rank < sharding.workers:
                raise ShardError(
                    f"joining {sharding.address} needs this machine's rank in 0..{sharding.workers - 1}"
                    " (--rank, or $RANK as torchrun sets it)"
                )
            try:
                run_rank(job, rank, sharding.workers, f"tcp://{sharding.address}")
            except (RuntimeError, dist.DistError) as exc:
                raise ShardError(
                    f"rank {rank} of the job at {sharding.address} failed: {exc}. Nothing merged "
                    "was written; run the command again on every machine (finished shards are "
                    "reused)"
                ) from exc
            if rank != 0:
                return None  # rank 0 holds (and caches) the merged profile
        else:
            _spawn(job, sharding.workers)
        return NeuronProfile.load(out)


def _spawn(job: _Job, world: int) -> None:
    import torch.multiprocessing as mp

    init = f"tcp://127.0.0.1:{_free_port()}"
    try:
        mp.start_processes(
            _spawned, args=(job, world, init), nprocs=world, join=True, start_method="spawn"
        )
    except mp.ProcessExitedException as exc:
        raise ShardError(
            f"profile worker {exc.error_index} of {world} died ({_how(exc)}) before the merge; "
            "the other workers were stopped and no merged profile was written. Run the command "
            "again: shards that finished are reused"
        ) from exc
    except mp.ProcessRaisedException as exc:
        last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "an error"
        raise ShardError(
            f"profile worker {exc.error_index} of {world} failed: {last}. No merged profile was "
            "written; fix the cause and run the command again (finished shards are reused)"
        ) from exc


def _how(exc: BaseException) -> str:
    signal_name = getattr(exc, "signal_name", None)
    if signal_name:
        return f"killed by {signal_name}"
    return f"exit code {getattr(exc, 'exit_code', '?')}"
