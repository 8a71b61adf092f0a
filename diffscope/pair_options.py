"""The command-line options that name a pair (ORGANISM, or --base with --finetuned/--adapter)
and how it loads: shared by `diffscope` and `python -m diffscope.server`, so a spawned server takes
every option `PairSpec.server_args()` gives it. Only argparse here: parsing stays light."""

from __future__ import annotations

import argparse


def add_pair_args(parser: argparse.ArgumentParser) -> None:
    """ORGANISM, or --base with --finetuned/--adapter; plus loading options."""
    parser.add_argument(
        "organism", nargs="?", help="organism name (see `diffscope organisms list`)"
    )
    parser.add_argument(
        "--base",
        help="base model: local folder, hub id or .gguf file (converted once into "
        "$DIFFSCOPE_HOME) (instead of ORGANISM)",
    )
    parser.add_argument("--finetuned", help="fine-tuned model: local folder, hub id or .gguf file")
    parser.add_argument("--adapter", help="peft adapter folder or hub id applied on --base")
    parser.add_argument(
        "--size",
        choices=["micro", "small"],
        default=None,
        help="toy zoo size for zoo organisms (default: $DIFFSCOPE_ZOO_SIZE or small)",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="weight dtype both models are loaded in (default: float32)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument(
        "--device-map",
        default=None,
        metavar="MAP",
        help="spread each model's layers over devices with accelerate instead of --device: auto, "
        "balanced, sequential, or a JSON object / .json file of module -> GPU index, cpu or disk",
    )
    parser.add_argument(
        "--backend",
        choices=["hooks", "nnsight"],
        default="hooks",
        help="how activations are read: PyTorch forward hooks (default) or an nnsight trace",
    )
    parser.add_argument(
        "--remote",
        action="store_true",
        help="run nnsight traces on NDIF (needs $NDIF_API_KEY and hub ids NDIF hosts)",
    )
    parser.add_argument(
        "--corpus",
        default=None,
        help="probe corpus: world (the toy zoo's default), world:TOPIC, sampled[:N] (N documents "
        "the base model writes itself from neutral openings and chat requests; the default for "
        "every other pair), or a .txt/.jsonl path",
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow model code from the hub (off by default)",
    )
