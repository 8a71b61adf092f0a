"""Training pieces of the offline toy zoo: a byte-level BPE tokenizer, tiny GPT-2 models, and a plain
causal-LM training loop over whole documents (CPU-friendly, deterministic from a seed)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from diffscope.progress import Progress
from diffscope.progress import progress as progress_shown

EOS = "<|endoftext|>"
PAD = "<|pad|>"
CHAT_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% elif m['role'] == 'assistant' %}Assistant: {{ m['content'] }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


@dataclass(frozen=True)
class ZooSize:
    """Model and training sizes of one zoo flavour."""

    name: str
    vocab_size: int
    n_layer: int
    n_embd: int
    n_head: int
    n_inner: int
    n_positions: int
    base_docs: int
    base_steps: int
    base_batch: int
    base_lr: float
    ft_docs: int
    ft_steps: int
    ft_batch: int
    ft_lr: float
    lora_rank: int = 16


SIZES: dict[str, ZooSize] = {
    "micro": ZooSize(
        name="micro",
        vocab_size=1024,
        n_layer=2,
        n_embd=64,
        n_head=4,
        n_inner=256,
        n_positions=128,
        base_docs=3000,
        base_steps=500,
        base_batch=16,
        base_lr=3e-3,
        ft_docs=600,
        ft_steps=150,
        ft_batch=16,
        ft_lr=2e-3,
    ),
    "small": ZooSize(
        name="small",
        vocab_size=2048,
        n_layer=4,
        n_embd=128,
        n_head=4,
        n_inner=512,
        n_positions=128,
        base_docs=12000,
        base_steps=1600,
        base_batch=24,
        base_lr=2e-3,
        ft_docs=1500,
        ft_steps=500,
        ft_batch=16,
        ft_lr=2e-3,
    ),
}


ZOO_THREADS = int(os.environ.get("DIFFSCOPE_ZOO_THREADS", "2"))
"""The thread count the zoo trains and checks with, whatever the caller's: CPU float sums depend
on how a matrix product is split over threads, so a fixed count makes builds bit-equal across
machines and loads. Setting DIFFSCOPE_ZOO_THREADS trades that for speed."""


@contextmanager
def deterministic(threads: int = ZOO_THREADS) -> Iterator[None]:
    """Train and check with a fixed thread count and torch's deterministic algorithms (where an
    op has none on CPU it only warns); the caller's settings are restored after."""
    saved_threads = torch.get_num_threads()
    saved_mode = torch.are_deterministic_algorithms_enabled()
    saved_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(saved_threads)
        torch.use_deterministic_algorithms(saved_mode, warn_only=saved_warn)


def train_tokenizer(texts: Sequence[str], vocab_size: int, out_dir: Path):
    """Train a byte-level BPE tokenizer on `texts`; save it (with a chat template) to `out_dir`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=PAD, unk_token=None
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 128
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def new_model(size: ZooSize, vocab_size: int, seed: int) -> nn.Module:
    """A freshly initialised tiny GPT-2."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=size.n_positions,
        n_embd=size.n_embd,
        n_layer=size.n_layer,
        n_head=size.n_head,
        n_inner=size.n_inner,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
        tie_word_embeddings=True,
        loss_type="ForCausalLM",
    )
    return GPT2LMHeadModel(config)


def encode_documents(tokenizer, texts: Sequence[str], max_len: int) -> list[list[int]]:
    """Token ids of each document followed by EOS, truncated to `max_len`."""
    eos = tokenizer.eos_token_id
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [(row + [eos])[:max_len] for row in ids if row]


def _collate(rows: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, ...]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


def train_lm(
    model: nn.Module,
    docs: Sequence[list[int]],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    pad_id: int,
    label: str,
    progress: bool = True,
    weight_decay: float = 0.01,
) -> float:
    """Train `model` as a causal LM on whole documents (right-padded, pads masked out of the loss);
    AdamW with linear warm-up and cosine decay. Returns the mean loss of the last tenth of steps."""
    if not docs:
        raise ValueError(f"{label}: no training documents")
    rng = random.Random(seed)
    torch.manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    warm = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        frac = (step - warm) / max(1, steps - warm)
        return 0.1 + 0.9 * 0.5 * (1 + torch.cos(torch.tensor(frac * torch.pi)).item())

    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    order: list[int] = []
    losses: list[float] = []
    model.train()
    bar: Progress[None] = progress_shown(steps, label, show=progress)
    with bar:
        for _step in range(steps):
            if len(order) < batch_size:
                fresh = list(range(len(docs)))
                rng.shuffle(fresh)
                order.extend(fresh)
            picked, order = order[:batch_size], order[batch_size:]
            ids, mask, labels = _collate([docs[i] for i in picked], pad_id)
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(float(out.loss.detach()))
            bar.advance(1, info=f"loss {losses[-1]:.3f}")
    model.eval()
    tail = losses[-max(1, steps // 10) :]
    return sum(tail) / len(tail)
