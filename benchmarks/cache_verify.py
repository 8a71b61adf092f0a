"""What checking a cached artifact's checksums costs on load, against loading it unchecked.

For file entries of several sizes (float32 safetensors written through `ArtifactCache.get`), the
median wall time of loading the entry from disk through a fresh `ArtifactCache` (manifest read,
sha256 of the file, then the load) against a plain `safetensors.torch.load_file` of the same file,
both from the page cache (the file is read once before timing). Reports the ratio checked/plain,
the absolute overhead in ms and the hashing throughput in MB/s, prints a table and ends with one
line of JSON. The micro zoo's entries are well under 1 MB; a real 7B pair's neuron profile is tens
of MB and a crosscoder's activation shards are hundreds of MB each (those folders are checked the
same way, once per process).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from diffscope.diffing.cache import ArtifactCache, check_manifest
from diffscope.paths import save_tensors


def _entry(cache: ArtifactCache, value: torch.Tensor | None) -> torch.Tensor:
    return cache.get(
        "meandiff",
        ({"bench": True},),
        lambda _p: value if value is not None else torch.zeros(1),
        lambda p, v: save_tensors(p, {"v": v}),
        lambda p: load_file(str(p))["v"],
    )


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(mb: int, repeats: int, folder: Path) -> dict[str, float]:
    root = folder / f"{mb}mb"
    value = torch.randn(mb * (1 << 20) // 4)
    _entry(ArtifactCache("bench", root), value)
    (path,) = root.glob("meandiff-*.safetensors")
    load_file(str(path))  # warm the page cache
    plain = _median_ms(lambda: float(load_file(str(path))["v"].sum()), repeats)
    checked = _median_ms(lambda: float(_entry(ArtifactCache("bench", root), None).sum()), repeats)
    hashing = _median_ms(lambda: check_manifest(ArtifactCache.manifest_path(path)), repeats)
    return {
        "mb": mb,
        "plain_ms": round(plain, 2),
        "checked_ms": round(checked, 2),
        "overhead_ms": round(checked - plain, 2),
        "ratio": round(checked / plain, 2),
        "hash_mb_s": round(mb / (hashing / 1000), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1,16,128", help="entry sizes in MB, comma-separated (default 1,16,128)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed loads per size (median)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="diffscope-cache-bench-") as tmp:
        rows = [measure(mb, args.repeats, Path(tmp)) for mb in sizes]
    print(f"{'MB':>6} {'plain ms':>9} {'checked ms':>11} {'overhead':>9} {'ratio':>6} {'MB/s':>7}")
    for r in rows:
        print(
            f"{r['mb']:>6} {r['plain_ms']:>9} {r['checked_ms']:>11} {r['overhead_ms']:>9} "
            f"{r['ratio']:>6} {r['hash_mb_s']:>7}"
        )
    print(json.dumps({"benchmark": "cache_verify", "repeats": args.repeats, "sizes": rows}))


if __name__ == "__main__":
    main()
