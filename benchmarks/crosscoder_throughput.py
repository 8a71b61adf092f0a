"""Training throughput of our BatchTopK crosscoder vs dictionary-learning's BatchTopK SAE.

Both train on the same synthetic paired activations (ours as [N, 2, d], theirs concatenated to
[N, 2d] after the same per-model scaling), with the same dictionary size, k, batch size, step
count, learning rate and thread count, in one process. Prints steps/s of each, their ratio, the
FVE per model of each, and a final line of JSON with the figures.

The PyPI `dictionary-learning` package pins nnsight<0.4 and pulls datasets/wandb/umap; it is
meant to be installed with `pip install --no-deps dictionary-learning einops`. Its package
`__init__` imports nnsight (for the activation buffer), so this script loads only the
`dictionary_learning.trainers` subpackage (which needs torch and einops) under a bare parent
package. If that fails, the script says why and measures ours alone.

Steps/s are best-of-`--repeats` alternating runs (the machine may be shared and noisy).

Usage: python benchmarks/crosscoder_throughput.py [--steps 200] [--threads 2] ...
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
import types
from typing import Any

import torch

from diffscope.diffing.crosscoder import (
    CrosscoderConfig,
    TensorActivations,
    evaluate,
    train_crosscoder,
)
from diffscope.diffing.crosscoder.model import sqrt_d_scales
from diffscope.diffing.crosscoder.train import IndexStream


def synthetic_pairs(n: int, d: int, n_features: int, seed: int) -> torch.Tensor:
    """Sparse paired activations: 80% shared features, 10% fine-tune only, 10% base only."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.nn.functional.normalize(torch.randn(2, n_features, d, generator=g), dim=-1)
    dirs[1, : int(0.8 * n_features)] = dirs[0, : int(0.8 * n_features)]
    present = torch.ones(2, n_features)
    present[0, int(0.8 * n_features) : int(0.9 * n_features)] = 0  # ft-only
    present[1, int(0.9 * n_features) :] = 0  # base-only
    on = torch.rand(n, n_features, generator=g) < (8 / n_features)
    coef = on * (torch.rand(n, n_features, generator=g) * 2 + 0.5)
    x = torch.einsum("nf,mf,mfd->nmd", coef, present, dirs)
    return x + 0.05 * torch.randn(n, 2, d, generator=g)


def load_trainer() -> tuple[Any, str]:
    """dictionary_learning's BatchTopKTrainer without running its nnsight-importing __init__."""
    spec = importlib.util.find_spec("dictionary_learning")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("dictionary-learning is not installed (pip install --no-deps it)")
    if "dictionary_learning" not in sys.modules:
        parent = types.ModuleType("dictionary_learning")
        parent.__path__ = list(spec.submodule_search_locations)
        sys.modules["dictionary_learning"] = parent
    module = importlib.import_module("dictionary_learning.trainers.batch_top_k")
    from importlib.metadata import version

    return module.BatchTopKTrainer, version("dictionary-learning")


def fve_halves(x: torch.Tensor, xhat: torch.Tensor) -> list[float]:
    """FVE per model of [N, 2, d] activations and reconstructions."""
    out = []
    for m in range(2):
        var_e = (x[:, m] - xhat[:, m]).double().var(0, unbiased=False).sum()
        var_x = x[:, m].double().var(0, unbiased=False).sum()
        out.append(float(1 - var_e / var_x))
    return out


def run_ours(x: torch.Tensor, cfg: CrosscoderConfig) -> tuple[float, list[float]]:
    acts = TensorActivations(x)
    start = time.perf_counter()
    model = train_crosscoder(acts, cfg, progress=False)
    elapsed = time.perf_counter() - start
    metrics = evaluate(model, TensorActivations(x[:8192]))
    return cfg.steps / elapsed, list(metrics.fve)


def run_theirs(
    trainer_cls: Any, x: torch.Tensor, scale: torch.Tensor, cfg: CrosscoderConfig
) -> tuple[float, list[float]]:
    n, _, d = x.shape
    flat = (x * scale[None, :, None]).reshape(n, 2 * d)
    start = time.perf_counter()
    trainer = trainer_cls(
        steps=cfg.steps,
        activation_dim=2 * d,
        dict_size=cfg.dict_size,
        k=cfg.k,
        layer=0,
        lm_name="synthetic",
        lr=cfg.lr,
        auxk_alpha=cfg.aux_coeff,
        warmup_steps=0,
        decay_start=int(cfg.steps * (1 - cfg.decay_frac)),
        threshold_start_step=int(cfg.steps * cfg.warmup_frac),
        seed=cfg.seed,
        device="cpu",
    )
    trainer.dead_feature_threshold = cfg.dead_after_tokens
    stream = IndexStream(n, cfg.seed + 1)
    for step in range(cfg.steps):
        trainer.update(step, flat[stream.next(cfg.batch_size)])
    elapsed = time.perf_counter() - start
    ae = trainer.ae.eval()
    with torch.no_grad():
        sample = flat[:8192]
        xhat = ae(sample)
    return cfg.steps / elapsed, fve_halves(sample.view(-1, 2, d), xhat.view(-1, 2, d))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32_768)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--features", type=int, default=256)
    parser.add_argument("--dict-size", type=int, default=1024)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs; best is kept")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    x = synthetic_pairs(args.rows, args.d_model, args.features, args.seed)
    cfg = CrosscoderConfig(
        d_model=args.d_model,
        dict_size=args.dict_size,
        loss="batchtopk",
        k=args.k,
        lr=args.lr,
        batch_size=args.batch_size,
        steps=args.steps,
        dead_after_tokens=50 * args.batch_size,
        seed=args.seed,
    )
    figures: dict[str, Any] = {
        "rows": args.rows,
        "d_model": args.d_model,
        "dict_size": args.dict_size,
        "k": args.k,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "threads": args.threads,
        "torch": torch.__version__,
        "repeats": args.repeats,
    }
    try:
        trainer_cls, version = load_trainer()
    except Exception as exc:  # the comparison is optional: report and keep our figures
        print(f"dictionary-learning unavailable, measuring ours only: {exc!r}")
        trainer_cls, version = None, None
        figures.update(dictionary_learning=None, reason=repr(exc))
    else:
        print(f"dictionary-learning {version}: loaded its trainers subpackage only (nnsight-free)")
    scale = sqrt_d_scales(x.norm(dim=-1).mean(0), args.d_model)
    ours_rates, their_rates = [], []
    ours_fve: list[float] = []
    their_fve: list[float] = []
    for rep in range(args.repeats):  # alternate the two so machine noise hits both alike
        rate, ours_fve = run_ours(x, cfg)
        ours_rates.append(rate)
        print(f"[{rep}] ours   crosscoder [N,2,d]:   {rate:8.2f} steps/s  FVE base/ft {ours_fve}")
        if trainer_cls is not None:
            rate, their_fve = run_theirs(trainer_cls, x, scale, cfg)
            their_rates.append(rate)
            print(
                f"[{rep}] theirs BatchTopKSAE [N,2d]: {rate:8.2f} steps/s  FVE base/ft {their_fve}"
            )
    figures.update(ours_steps_per_s=max(ours_rates), ours_fve=ours_fve)
    if their_rates:
        ratio = max(ours_rates) / max(their_rates)
        print(
            f"best-of-{args.repeats} steps/s: ours {max(ours_rates):.2f}, "
            f"theirs {max(their_rates):.2f}, ratio ours/theirs {ratio:.3f}"
        )
        figures.update(
            dictionary_learning=version,
            theirs_steps_per_s=max(their_rates),
            theirs_fve=their_fve,
            ratio_ours_over_theirs=ratio,
        )
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
