"""Latency of the diffing tools through MCP against the same computation called directly.

For every tool of the method profile, on defaults (query_models with one prompt) and with the pair's
artifacts (and a crosscoder) already computed: the median wall time of a warm call through an
in-process `mcp.Client` (argument validation, budget, worker thread, JSON result and transport
included) and the median
time of the tool's own function called directly in process on the same arguments. Reports the
ratio client/direct (target <= 1.2 for heavy tools, those whose direct median is at least
--heavy-ms) and the absolute overhead in ms (what matters for light tools). Prints a table and ends
with one line of JSON.

Pairs: `--pair micro` (default) loads a micro toy-zoo organism (build the zoo first: `diffscope zoo
build --size micro`); `--pair gpt2-small` builds a random GPT-2-small-sized pair (12 layers, d 768,
3072 neurons, the micro zoo's tokenizer), the size the "~30 s on defaults" contract is stated for.
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


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", choices=("micro", "gpt2-small"), default="micro")
    parser.add_argument("--organism", default="backdoor", help="micro organism (--pair micro)")
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
    pair = micro_pair(args.organism) if args.pair == "micro" else gpt2_small_pair()
    arts = Artifacts(pair, corpus=CorpusSpec(max_windows=args.windows))
    start = time.perf_counter()
    arts.prepare()
    arts.crosscoder(steps=args.crosscoder_steps, progress=False)
    prepare_s = time.perf_counter() - start
    ctx = ToolContext(pair=arts)
    server = create_server(ctx, "method", log_level="WARNING")
    names = args.tools or list(TOOLS)
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
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
