"""Throughput and memory of the full neuron profile against a plain forward of both models.

On a GPT-2-small-sized pair (12 layers x 3072 neurons, random weights; the fine-tune is the base with
a few neurons edited) this measures, in one run:
  - tokens/s of a plain forward of both models on the same batches;
  - tokens/s of the full neuron profile (every neuron of every layer, exemplars on, total mode), and
    of the profile with the intrinsic mode added (reported, not targeted);
  - peak resident memory of the profile over N and 2N tokens, each in a fresh subprocess.
The plain forward is the models' own forward (logits included); the profile's forwards stop after
the last layer's MLP neurons, since nothing after them is needed. Each timed profile starts from an
empty state, so the cost of filling the exemplar heaps is included every time.
Prints a table and ends with one line of JSON. Target: profile/forward >= 0.85; memory growth < 10%.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch


def make_pair(layers: int, d: int, neurons: int, vocab: int, ctx: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    from diffscope.models import ModelPair

    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=vocab, n_positions=ctx, n_embd=d, n_layer=layers, n_head=12, n_inner=neurons
    )
    base = GPT2LMHeadModel(cfg).eval()
    ft = GPT2LMHeadModel(cfg).eval()
    ft.load_state_dict(base.state_dict())
    with torch.no_grad():
        for layer in range(0, layers, 3):
            ft.transformer.h[layer].mlp.c_fc.weight[:, 100 + layer] *= 2.0
    return ModelPair.from_models(base, ft, tokenizer=None, name="bench")


def windows(n: int, ctx: int, vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, vocab, (n, ctx), generator=g)


@torch.no_grad()
def plain_forward(pair, data: torch.Tensor, batch: int) -> float:
    start = time.perf_counter()
    for i in range(0, data.shape[0], batch):
        b = pair.batch_from_ids(data[i : i + batch])
        pair.base(**b.model_inputs())
        pair.finetuned(**b.model_inputs())
    return data.numel() / (time.perf_counter() - start)


def profile_speed(pair, data: torch.Tensor, batch: int, intrinsic: bool) -> float:
    from diffscope.diffing.neurons import ProfileConfig, profile_neurons

    cfg = ProfileConfig(batch_size=batch, intrinsic=intrinsic, skip_first=0)
    start = time.perf_counter()
    profile_neurons(pair, data, cfg)
    return data.numel() / (time.perf_counter() - start)


def peak_rss_child(args: argparse.Namespace, n_windows: int) -> float:
    """Peak RSS (MiB) of a fresh process that profiles `n_windows` windows."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(n_windows),
        "--layers",
        str(args.layers),
        "--ctx",
        str(args.ctx),
        "--batch",
        str(args.batch),
        "--threads",
        str(args.threads),
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--ctx", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=3, help="batches per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mem-windows", type=int, default=16, help="N windows for the memory run")
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pair = make_pair(args.layers, 768, 3072, 8192, args.ctx)
    if args.child:
        profile_speed(pair, windows(args.child, args.ctx, 8192), args.batch, intrinsic=False)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return
    data = windows(args.batch * args.batches, args.ctx, 8192)
    plain_forward(pair, data[: args.batch], args.batch)  # warm-up
    fwd, prof, intr = [], [], []
    for _ in range(args.repeats):  # interleaved so load on the machine hits both sides alike
        fwd.append(plain_forward(pair, data, args.batch))
        prof.append(profile_speed(pair, data, args.batch, intrinsic=False))
        intr.append(profile_speed(pair, data, args.batch, intrinsic=True))
    f, p, i = (statistics.median(x) for x in (fwd, prof, intr))
    mem_n = peak_rss_child(args, args.mem_windows)
    mem_2n = peak_rss_child(args, 2 * args.mem_windows)
    growth = mem_2n / mem_n - 1
    figures = {
        "layers": args.layers,
        "neurons_per_layer": 3072,
        "tokens_per_batch": args.batch * args.ctx,
        "threads": args.threads,
        "device": "cpu",
        "forward_tokens_per_s": round(f, 1),
        "profile_tokens_per_s": round(p, 1),
        "profile_intrinsic_tokens_per_s": round(i, 1),
        "ratio_profile_vs_forward": round(p / f, 3),
        "ratio_profile_intrinsic_vs_forward": round(i / f, 3),
        "peak_rss_mib_N": round(mem_n, 1),
        "peak_rss_mib_2N": round(mem_2n, 1),
        "memory_growth_2N_vs_N": round(growth, 4),
        "target_ratio": 0.85,
        "target_memory_growth": 0.10,
    }
    print(f"plain forward of both models : {f:8.1f} tokens/s")
    print(f"neuron profile (total)       : {p:8.1f} tokens/s  ratio {p / f:.3f} (target >= 0.85)")
    print(f"neuron profile (+intrinsic)  : {i:8.1f} tokens/s  ratio {i / f:.3f}")
    print(
        f"peak RSS: N={args.mem_windows * args.ctx} tokens {mem_n:.0f} MiB, "
        f"2N {mem_2n:.0f} MiB, growth {growth:+.1%} (target < 10%)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
