"""Does the zoo build the same on every machine? Builds each zoo size twice, once with 1 and once
with 2 caller threads (OMP_NUM_THREADS / torch.set_num_threads in a fresh process each), into
separate temporary homes, and prints every organism's check figures and margin and whether the
two builds agree.

The zoo trains and checks with a fixed thread count and deterministic algorithms
(`organisms.training.deterministic`), so the builds should be bit-equal: check figures are compared
exactly, and the saved weights by hash. Figures that differ are also compared within a tolerance
of 1e-6 (relative) and reported as such: a difference there can only be float rounding of the
final training loss, not a different model. Each organism's margin (min over its check's conditions
of measured / required effect) should be >= 1.5 (`checks.TARGET_MARGIN`).

Ends with one line of JSON. Usage:
    python benchmarks/zoo_determinism.py [--sizes micro,small] [--threads 1,2] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOLERANCE = 1e-6


def child(size: str, threads: int) -> None:
    """Build one zoo in this process ($DIFFSCOPE_HOME set by the parent); print one JSON line."""
    import torch

    torch.set_num_threads(threads)
    from diffscope.organisms.registry import zoo_root
    from diffscope.organisms.zoo import build_zoo

    start = time.time()
    results = build_zoo(size, progress=False)
    seconds = time.time() - start
    root = zoo_root(size)
    out = {}
    for r in results:
        model = root / r.name / "model"
        digest = hashlib.blake2b(digest_size=12)
        for path in sorted(model.glob("*.safetensors")):
            digest.update(path.read_bytes())
        out[r.name] = {
            "passed": r.passed,
            "margin": r.margin,
            "figures": r.figures,
            "seconds": round(r.seconds, 1),
            "weights": digest.hexdigest(),
            "reason": r.reason,
        }
    print(json.dumps({"seconds": round(seconds, 1), "threads": threads, "organisms": out}))


def build(size: str, threads: int, home: Path) -> dict:
    env = dict(os.environ)
    env.update(
        DIFFSCOPE_HOME=str(home),
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    cmd = [sys.executable, __file__, "--child", size, "--threads", str(threads)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"build {size} with {threads} threads failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def close(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    return a == b


def compare(builds: list[dict]) -> dict[str, dict]:
    """Per organism: margins of each build, equal figures / weights, within-tolerance figures."""
    first, *rest = builds
    rows = {}
    for name, entry in first["organisms"].items():
        others = [b["organisms"][name] for b in rest]
        figures = entry["figures"]
        rows[name] = {
            "passed": [entry["passed"], *(o["passed"] for o in others)],
            "margin": [entry["margin"], *(o["margin"] for o in others)],
            "figures": figures,
            "equal_figures": all(o["figures"] == figures for o in others),
            "within_tolerance": all(
                o["figures"].keys() == figures.keys()
                and all(close(figures[k], o["figures"][k]) for k in figures)
                for o in others
            ),
            "equal_weights": all(o["weights"] == entry["weights"] for o in others),
            "seconds": [entry["seconds"], *(o["seconds"] for o in others)],
        }
    return rows


def report(size: str, builds: list[dict], rows: dict[str, dict], target: float) -> None:
    threads = ", ".join(f"{b['threads']} thread(s) {b['seconds']:.0f}s" for b in builds)
    print(f"\n== zoo {size}: builds with {threads}")
    print(f"{'organism':<18} {'passed':<11} {'margin':<15} {'figures':<7} {'weights':<7} figures")
    for name, row in rows.items():
        margins = " / ".join("-" if m is None else f"{m:.2f}" for m in row["margin"])
        flag = (
            "  <-- margin below target"
            if any(m is not None and m < target for m in row["margin"])
            else ""
        )
        same = "equal" if row["equal_figures"] else ("~tol" if row["within_tolerance"] else "DIFF")
        weights = "equal" if row["equal_weights"] else "DIFF"
        shown = ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in row["figures"].items()
        )
        passed = "/".join("ok" if p else "FAIL" for p in row["passed"])
        print(f"{name:<18} {passed:<11} {margins:<15} {same:<7} {weights:<7} {shown}{flag}")
    margins = [m for row in rows.values() for m in row["margin"] if m is not None]
    if len(builds) < 2:
        print("(one build only: nothing to compare, the equal columns are vacuous)")
    print(
        f"min margin {min(margins):.2f} (target >= {target:g}); "
        f"all figures equal: {all(r['equal_figures'] for r in rows.values())}; "
        f"all weights equal: {all(r['equal_weights'] for r in rows.values())}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument(
        "--sizes", default="micro", help="comma-separated zoo sizes to build (default: micro)"
    )
    parser.add_argument(
        "--threads",
        default="1,2",
        help="comma-separated caller thread counts, one build each (default: 1,2)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary homes")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    if args.child:
        child(args.child, threads[0])
        return
    from diffscope.organisms.checks import TARGET_MARGIN
    from diffscope.organisms.training import ZOO_THREADS

    print(f"zoo trains and checks with {ZOO_THREADS} threads; caller threads {threads}")
    summary: dict[str, dict] = {}
    for size in args.sizes.split(","):
        builds = []
        for t in threads:
            home = Path(tempfile.mkdtemp(prefix=f"zoo-determinism-{size}-{t}-"))
            try:
                builds.append(build(size, t, home))
            finally:
                if not args.keep:
                    shutil.rmtree(home, ignore_errors=True)
                else:
                    print(f"kept {home}")
        rows = compare(builds)
        report(size, builds, rows, TARGET_MARGIN)
        summary[size] = {
            "build_seconds": {str(b["threads"]): b["seconds"] for b in builds},
            "compared_builds": len(builds),
            "all_figures_equal": all(r["equal_figures"] for r in rows.values()),
            "all_weights_equal": all(r["equal_weights"] for r in rows.values()),
            "min_margin": min(m for r in rows.values() for m in r["margin"] if m is not None),
            "organisms": {
                name: {k: row[k] for k in ("passed", "margin", "figures", "equal_figures")}
                for name, row in rows.items()
            },
        }
    print(json.dumps({"zoo_determinism": summary, "zoo_threads": ZOO_THREADS}))


if __name__ == "__main__":
    main()
