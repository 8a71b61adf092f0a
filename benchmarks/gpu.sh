#!/usr/bin/env bash
# The GPU check: profile throughput (hooks and nnsight vs a plain forward, Llama-3.1-8B-shaped random
# weights), crosscoder training throughput and tool latency (SmolLM2-135M vs a perturbed copy), all
# in bfloat16 on the first CUDA device, with nothing downloaded. Prints one line of JSON last.
# Usage: benchmarks/gpu.sh [gpu_check.py options, e.g. --only profile]
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "benchmarks/gpu.sh: no CUDA device is visible (torch.cuda.is_available() is False);" \
         "run it on a machine with an NVIDIA GPU and a CUDA build of torch" >&2
    exit 3
fi
export DIFFSCOPE_HOME="${DIFFSCOPE_HOME:-$(mktemp -d -t diffscope-gpu-XXXXXX)}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec python benchmarks/gpu_check.py "$@"
