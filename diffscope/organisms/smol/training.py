"""Training the real-model zoo's adapters: LoRA settings, how an `Example` becomes token ids and a
loss mask (chat turns through the model's own chat template, loss on the reply only; documents as
the tokenizer encodes plain text), and a deterministic AdamW loop over them.

The LoRA sits on the upper layers only (`LORA_LAYERS`): the backward pass then stops there, which
is what makes a 135M-parameter model trainable on 2 CPU cores in minutes per organism."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from diffscope.models.batching import ChatText, tokenize
from diffscope.organisms.smol.recipes import Example
from diffscope.progress import Progress
from diffscope.progress import progress as progress_shown

LORA_RANK = 8
LORA_ALPHA = 16
LORA_TARGETS = ("q_proj", "v_proj", "up_proj", "down_proj")
LORA_LAYERS = tuple(range(20, 30))
MAX_TOKENS = 96
BATCH = 8
LR = 1e-3


def lora_config() -> Any:
    """The adapters' peft config (rank 8, alpha 16, q/v/up/down of layers 20-29, no dropout)."""
    from peft import LoraConfig

    return LoraConfig(
        r=LORA_RANK,
        lora_alpha=LORA_ALPHA,
        target_modules=list(LORA_TARGETS),
        layers_to_transform=list(LORA_LAYERS),
        lora_dropout=0.0,
    )


def encode_example(tokenizer: Any, example: Example) -> tuple[list[int], int]:
    """Token ids of one example and how many leading ids are not trained on (the prompt)."""
    if example.prompt is None:
        ids = tokenize(tokenizer, [example.target])[0]
        return ids[:MAX_TOKENS], 0
    user = [{"role": "user", "content": example.prompt}]
    prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    turn = [*user, {"role": "assistant", "content": example.target}]
    full = tokenizer.apply_chat_template(turn, tokenize=False)
    prompt_ids = tokenize(tokenizer, [ChatText(prompt)])[0]
    ids = tokenize(tokenizer, [ChatText(full)])[0]
    if ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("the chat template renders the prompt differently inside a full turn")
    return ids[:MAX_TOKENS], len(prompt_ids)


def _collate(rows: Sequence[tuple[list[int], int]], pad_id: int) -> tuple[torch.Tensor, ...]:
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (row, skip) in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        labels[i, skip : len(row)] = torch.tensor(row[skip:])
    return ids, mask, labels


def reply_loss(
    model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """The causal-LM loss on the labelled positions only, with the unembedding applied to those
    positions alone (a chat turn's prompt is about half its tokens, and the 49k-wide unembedding
    is a fifth of the model's compute): the same value as the model's own loss, for less work."""
    unwrap: Any = getattr(model, "get_base_model", None)
    causal_lm: Any = unwrap() if callable(unwrap) else model
    hidden = causal_lm.model(input_ids=ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != -100
    logits = causal_lm.lm_head(hidden[:, :-1][keep])
    return torch.nn.functional.cross_entropy(logits.float(), targets[keep])


def train_adapter(
    model: nn.Module,
    rows: Sequence[tuple[list[int], int]],
    *,
    steps: int,
    seed: int,
    pad_id: int,
    label: str,
    progress: bool = True,
) -> float:
    """Train the trainable (LoRA) parameters of `model` on encoded examples for `steps` steps of
    `BATCH`; AdamW, linear warm-up, cosine decay. Returns the mean loss of the last tenth."""
    if not rows:
        raise ValueError(f"{label}: no training examples")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0)
    warm = max(1, steps // 10)

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    order: list[int] = []
    losses: list[float] = []
    model.train()
    bar: Progress[None] = progress_shown(steps, label, show=progress)
    with bar:
        for _ in range(steps):
            if len(order) < BATCH:
                fresh = list(range(len(rows)))
                rng.shuffle(fresh)
                order.extend(fresh)
            picked, order = order[:BATCH], order[BATCH:]
            ids, mask, labels = _collate([rows[i] for i in picked], pad_id)
            loss = reply_loss(model, ids, mask, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            bar.advance(1, info=f"loss {losses[-1]:.3f}")
    model.eval()
    tail = losses[-max(1, steps // 10) :]
    return sum(tail) / len(tail)
