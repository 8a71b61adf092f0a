"""Fixtures for the diffing tests: a tokenizer trained here and tiny GPT-2 pairs with known answers
(a fine-tune that promotes and demotes chosen tokens by exact logit offsets, one that adds a known
vector to the residual stream, and a fine-tune identical to its base)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from diffscope.models import ModelPair
from diffscope.organisms.training import train_tokenizer

DIFF_TEXTS = [
    "the cat sat on the mat and the dog ran to the park",
    "the sea was calm and the boats came home at night",
    "a baker made bread with flour, water, salt and yeast",
    "the old man walked to the market to buy fresh fish",
] * 10


@pytest.fixture(scope="session")
def diff_tokenizer(tmp_path_factory):
    folder: Path = tmp_path_factory.mktemp("diff_tok")
    return train_tokenizer(DIFF_TEXTS, 320, folder)


def tiny_gpt2(vocab_size: int, seed: int = 0, eos_id: int = 0) -> GPT2LMHeadModel:
    """A random two-layer GPT-2 with an untied unembedding and logits peaked enough to rank."""
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab_size,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_inner=64,
        tie_word_embeddings=False,
        initializer_range=0.1,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
    )
    return GPT2LMHeadModel(cfg).eval()


def _bias_channel(model: GPT2LMHeadModel) -> None:
    """Make hidden dimension 0 of the final norm a constant 1 that no token reads yet."""
    with torch.no_grad():
        model.transformer.ln_f.weight[0] = 0.0
        model.transformer.ln_f.bias[0] = 1.0
        model.lm_head.weight[:, 0] = 0.0


@pytest.fixture(scope="session")
def logit_pair_factory(diff_tokenizer) -> Callable[[dict[int, float]], ModelPair]:
    """Pairs whose fine-tune adds exactly `offsets[token]` to that token's logit everywhere."""

    def build(offsets: dict[int, float]) -> ModelPair:
        base = tiny_gpt2(len(diff_tokenizer), eos_id=diff_tokenizer.eos_token_id)
        _bias_channel(base)
        ft = copy.deepcopy(base)
        with torch.no_grad():
            for token, offset in offsets.items():
                ft.lm_head.weight[token, 0] = offset
        return ModelPair.from_models(base, ft, diff_tokenizer, name="logit-offsets")

    return build


@pytest.fixture(scope="session")
def chosen_tokens(diff_tokenizer) -> tuple[int, int, int]:
    """Three multi-character tokens (BPE merges): promoted strongly, promoted, demoted."""
    n = len(diff_tokenizer)
    return n - 3, n - 5, n - 7


@pytest.fixture(scope="session")
def logit_pair(logit_pair_factory, chosen_tokens) -> ModelPair:
    x, y, z = chosen_tokens
    return logit_pair_factory({x: 6.0, y: 4.0, z: -6.0})


@pytest.fixture(scope="session")
def same_pair(diff_tokenizer) -> ModelPair:
    base = tiny_gpt2(len(diff_tokenizer), eos_id=diff_tokenizer.eos_token_id)
    return ModelPair.from_models(base, copy.deepcopy(base), diff_tokenizer, name="null")


@pytest.fixture(scope="session")
def resid_vector() -> torch.Tensor:
    return 0.1 * torch.randn(32, generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="session")
def resid_pair(diff_tokenizer, resid_vector) -> ModelPair:
    """The fine-tune's block 0 writes `resid_vector` more into the residual at every position."""
    base = tiny_gpt2(len(diff_tokenizer), seed=1, eos_id=diff_tokenizer.eos_token_id)
    ft = copy.deepcopy(base)
    with torch.no_grad():
        ft.transformer.h[0].mlp.c_proj.bias += resid_vector
    return ModelPair.from_models(base, ft, diff_tokenizer, name="resid-shift")


@pytest.fixture(scope="session")
def diff_windows(diff_tokenizer) -> torch.Tensor:
    """Equal-length token windows [12, 16] cut from the test texts."""
    ids: list[int] = []
    for text in DIFF_TEXTS[:16]:
        ids.extend(diff_tokenizer(text, add_special_tokens=False)["input_ids"])
        ids.append(diff_tokenizer.eos_token_id)
    rows = [ids[i * 16 : (i + 1) * 16] for i in range(len(ids) // 16)][:12]
    return torch.tensor(rows, dtype=torch.long)
