"""Latency of the diffing tools through MCP: cold and warm worst cases, and the MCP overhead.

`--mode coldwarm` (part of the default `both`): the slowest default call per tool on a cold server
(a fresh artifact cache, background preparation on, each tool called the moment the server is up:
every answer must come in under 5 s, "preparing" when its artifact is not ready) and on the
warm one (after preparation, `--repeats` calls each: every one under 30 s). The pair is a zoo
organism (`--organism NAME --size micro|small`) or any pair (`--base B --finetuned F|--adapter A`),
so it runs on the real-model zoo too.

`--mode overhead` (also part of `both`):

For every tool of the method profile, on defaults (query_models with one prompt) and with the pair's
artifacts (and a crosscoder) already computed: the median wall time of a warm call through an
in-process `mcp.Client` (argument validation, budget, worker thread, JSON result and transport
included) and the median
time of the tool's own function called directly in process on the same arguments. Reports the
ratio client/direct (target <= 1.2 for heavy tools, those whose direct median is at least
--heavy-ms) and the absolute overhead in ms (what matters for light tools). Prints a table and ends
with one line of JSON.

Pairs for the overhead mode: `--pair micro` (default) loads a micro toy-zoo organism (build the
zoo first: `diffscope zoo build --size micro`); `--pair gpt2-small` builds a random
GPT-2-small-sized pair (12 layers, d 768, 3072 neurons, the micro zoo's tokenizer), the size the
"~30 s on defaults" contract is stated for.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import torch


def micro_pair(organism: str):
    from diffscope.organisms.registry import get_organism, load_pair

    return load_pair(get_organism(organism), size="micro")


def gpt2_small_pair():
    """Random GPT-2-small-sized base and a fine-tune with a few MLP neurons edited per layer."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from diffscope.models import ModelPair
    from diffscope.organisms.registry import resolve_ref

    tokenizer = AutoTokenizer.from_pretrained(resolve_ref("zoo:base", "micro"))
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(tokenizer), n_positions=1024, n_embd=768, n_layer=12, n_head=12, n_inner=3072
    )
    base = GPT2LMHeadModel(cfg).eval()
    finetuned = GPT2LMHeadModel(cfg).eval()
    finetuned.load_state_dict(base.state_dict())
    with torch.no_grad():
        for layer in range(0, 12, 3):
            finetuned.transformer.h[layer].mlp.c_fc.weight[:, 100 + layer] *= 3.0
    return ModelPair.from_models(base, finetuned, tokenizer, name="bench")


def spec_pair(args: argparse.Namespace):
    """The pair the cold/warm mode measures: a zoo organism or --base with --finetuned/--adapter."""
    from diffscope.workspace import PairSpec, open_workspace

    if args.base:
        spec = PairSpec(base=args.base, finetuned=args.finetuned, adapter=args.adapter)
    else:
        spec = PairSpec(organism=args.organism, size=args.size)
    return open_workspace(spec.model_copy(update={"device": args.device})).pair


def answer_kind(result: Any) -> str:
    if result.is_error:
        return "error"
    if (result.structured_content or {}).get("status") == "preparing":
        return "preparing"
    return "result"


def cold_warm(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """The slowest default call per tool, cold (preparing in the background) and warm."""
    import tempfile
    from pathlib import Path

    from anyio.from_thread import start_blocking_portal
    from mcp import Client

    from diffscope.diffing.artifacts import Artifacts, CorpusSpec
    from diffscope.server import create_server
    from diffscope.tools import ToolContext

    pair = spec_pair(args)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="tool-latency-") as root:
        arts = Artifacts(pair, corpus=CorpusSpec(max_windows=args.windows), root=Path(root))
        ctx = ToolContext(pair=arts)
        server = create_server(ctx, "method", log_level="WARNING", prepare_in_background=True)
        with (
            start_blocking_portal() as portal,
            portal.wrap_async_context_manager(Client(server)) as client,  # type: ignore[arg-type]
        ):

            def call(name: str) -> tuple[float, str]:
                raw = {"prompts": ["Once upon a time"]} if name == "query_models" else {}
                start = time.perf_counter()
                result = portal.call(lambda: client.call_tool(name, raw))
                return time.perf_counter() - start, answer_kind(result)

            for name in names:  # cold: the server has only just started preparing
                took, kind = call(name)
                rows[name] = {"cold_s": round(took, 3), "cold_answer": kind}
            preparer = server.preparer
            assert preparer is not None
            start = time.perf_counter()
            while any(job.state in ("queued", "working") for job in preparer.jobs()):
                time.sleep(0.5)
            prepared_s = time.perf_counter() - start
            if {"top_latents", "latent_exemplars"} & set(names):
                arts.crosscoder(steps=args.crosscoder_steps)  # reports to the context
            for name in names:
                runs = [call(name) for _ in range(args.repeats)]
                rows[name]["warm_max_s"] = round(max(t for t, _ in runs), 3)
                rows[name]["warm_answers"] = sorted({k for _, k in runs})
    cold_max = max(row["cold_s"] for row in rows.values())
    warm_max = max(row["warm_max_s"] for row in rows.values())
    print(
        f"cold/warm: {pair.n_layers} layers x {pair.n_neurons} neurons, {args.windows} windows, "
        f"{args.threads} torch threads; background preparation took {prepared_s:.1f} s more "
        "after the cold calls"
    )
    print(f"{'tool':22} {'cold s':>8} {'cold answer':>12} {'warm max s':>11}  warm answers")
    for name, row in rows.items():
        print(
            f"{name:22} {row['cold_s']:8.2f} {row['cold_answer']:>12} {row['warm_max_s']:11.2f}"
            f"  {', '.join(row['warm_answers'])}"
        )
    return {
        "cold_max_s": cold_max,
        "warm_max_s": warm_max,
        "cold_target_met": cold_max < 5.0,
        "warm_target_met": warm_max < 30.0
        and all(row["warm_answers"] == ["result"] for row in rows.values()),
        "prepared_after_s": round(prepared_s, 2),
        "tools": rows,
    }


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode",
        choices=("both", "coldwarm", "overhead"),
        default="both",
        help="coldwarm: slowest default call per tool, cold and warm; overhead: MCP vs direct",
    )
    parser.add_argument(
        "--pair", choices=("micro", "gpt2-small"), default="micro", help="overhead mode's pair"
    )
    parser.add_argument("--organism", default="backdoor", help="zoo organism to measure")
    parser.add_argument("--size", choices=("micro", "small"), default="micro", help="zoo size")
    parser.add_argument("--base", help="cold/warm mode: a base model (instead of --organism)")
    parser.add_argument("--finetuned", help="cold/warm mode: its fine-tune (with --base)")
    parser.add_argument("--adapter", help="cold/warm mode: a peft adapter (with --base)")
    parser.add_argument("--device", default="cpu", help="torch device for the cold/warm pair")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--windows", type=int, default=64, help="probe-corpus windows")
    parser.add_argument("--heavy-ms", type=float, default=50.0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--tools", nargs="*", help="only these tools")
    parser.add_argument(
        "--crosscoder-steps", type=int, default=500, help="training steps of the crosscoder"
    )
    args = parser.parse_args(argv)

    from anyio.from_thread import start_blocking_portal
    from mcp import Client

    from diffscope.diffing.artifacts import Artifacts, CorpusSpec
    from diffscope.server import create_server
    from diffscope.tools import TOOLS, ToolContext, load_tool_modules

    torch.set_num_threads(args.threads)
    load_tool_modules()
    names = args.tools or list(TOOLS)
    latency = cold_warm(args, names) if args.mode in ("both", "coldwarm") else None
    if args.mode == "coldwarm":
        print(json.dumps({"benchmark": "tool_latency", "mode": "coldwarm", **(latency or {})}))
        return latency or {}
    pair = micro_pair(args.organism) if args.pair == "micro" else gpt2_small_pair()
    arts = Artifacts(pair, corpus=CorpusSpec(max_windows=args.windows))
    start = time.perf_counter()
    arts.prepare()
    arts.crosscoder(steps=args.crosscoder_steps, progress=False)
    prepare_s = time.perf_counter() - start
    ctx = ToolContext(pair=arts)
    server = create_server(ctx, "method", log_level="WARNING")
    rows: dict[str, dict[str, float]] = {}
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(
            Client(server)  # type: ignore[arg-type]
        ) as client,
    ):
        for name in names:
            tool_def = TOOLS[name]
            raw = {"prompts": ["Once upon a time"]} if name == "query_models" else {}
            validated = tool_def.validate(raw)

            def direct(tool_def=tool_def, validated=validated) -> None:
                with ctx.lock:
                    tool_def.fn(ctx, **validated)

            def through_client(name=name, raw=raw) -> None:
                result = portal.call(lambda: client.call_tool(name, raw))
                if result.is_error:
                    raise RuntimeError(f"{name} failed: {result.content}")

            first = timed(through_client, 1)[0]  # warms caches (artifacts, clusters, plots)
            direct(), through_client()
            # interleave so load on a shared machine hits both sides alike
            d_times, c_times = [], []
            for _ in range(args.repeats):
                d_times += timed(direct, 1)
                c_times += timed(through_client, 1)
            d, c = statistics.median(d_times), statistics.median(c_times)
            rows[name] = {
                "first_call_ms": round(first * 1000, 2),
                "direct_ms": round(d * 1000, 2),
                "client_ms": round(c * 1000, 2),
                "overhead_ms": round((c - d) * 1000, 2),
                "ratio": round(c / d, 3) if d > 0 else float("inf"),
                "heavy": d * 1000 >= args.heavy_ms,
            }
    print(
        f"pair {args.pair} ({pair.n_layers} layers x {pair.n_neurons} neurons); "
        f"artifacts prepared in {prepare_s:.1f} s; {args.repeats} warm calls each"
    )
    print(f"{'tool':22} {'direct ms':>10} {'client ms':>10} {'overhead':>9} {'ratio':>7}  kind")
    for name, row in rows.items():
        kind = "heavy" if row["heavy"] else "light"
        print(
            f"{name:22} {row['direct_ms']:10.2f} {row['client_ms']:10.2f} "
            f"{row['overhead_ms']:9.2f} {row['ratio']:7.3f}  {kind}"
        )
    heavy = [row["ratio"] for row in rows.values() if row["heavy"]]
    light = [row["overhead_ms"] for row in rows.values() if not row["heavy"]]
    summary = {
        "benchmark": "tool_latency",
        "pair": args.pair,
        "repeats": args.repeats,
        "prepare_s": round(prepare_s, 2),
        "max_heavy_ratio": max(heavy) if heavy else None,
        "heavy_target_met": all(r <= 1.2 for r in heavy),
        "median_light_overhead_ms": round(statistics.median(light), 2) if light else None,
        "tools": rows,
    }
    if latency is not None:
        summary["coldwarm"] = latency
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
