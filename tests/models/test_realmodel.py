"""A real pretrained chat model through ModelPair: SmolLM2-135M-Instruct loaded from its GGUF file.

diffscope's token ids, logits and greedy generations equal transformers' own on the real model,
with and without the chat template; a tokenizer that adds BOS gets it on every prompt and probe
window (and never twice on a chat-templated prompt); special tokens stay out of rankings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from realsupport import SMOLLM2, needs_smollm2

from diffscope.diffing.probe import CorpusSpec, probe_windows
from diffscope.models import ModelPair

pytestmark = needs_smollm2

PROMPTS = ["The capital of France is", "Write one sentence about the sea."]


@pytest.fixture(scope="module")
def hf(smol_folder: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smol_folder, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(smol_folder)


@pytest.fixture(scope="module")
def same_pair(hf: tuple[Any, Any]) -> ModelPair:
    model, tok = hf
    return ModelPair.from_models(model, model, tok, name="smol")


def _hf_ids(tok: Any, prompt: str, chat: bool) -> list[int]:
    if chat:
        messages = [{"role": "user", "content": prompt}]
        out = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)
    return list(tok(prompt)["input_ids"])


@pytest.mark.parametrize("chat", [False, True])
def test_ids_and_logits_equal_transformers(hf, same_pair: ModelPair, chat: bool) -> None:
    model, tok = hf
    texts = [same_pair.format_prompt(p, chat=chat) for p in PROMPTS]
    batch = same_pair.encode(texts)  # left-padded: the two prompts differ in length
    logits = same_pair.logits("base", batch)
    for row, prompt in enumerate(PROMPTS):
        ids = _hf_ids(tok, prompt, chat)
        mask = batch.attention_mask[row].bool()
        assert batch.input_ids[row][mask].tolist() == ids
        with torch.no_grad():
            own = model(input_ids=torch.tensor([ids])).logits[0]
        torch.testing.assert_close(logits[row][mask], own, atol=2e-4, rtol=1e-4)
    if chat:  # SmolLM2's template adds its own default system prompt: kept, it is the model's own
        assert "You are a helpful AI assistant" in texts[0]


@pytest.mark.parametrize("chat", [False, True])
def test_greedy_generation_equals_transformers(hf, same_pair: ModelPair, chat: bool) -> None:
    model, tok = hf
    ours = same_pair.generate("base", PROMPTS, max_new_tokens=8, chat=chat)
    for prompt, text in zip(PROMPTS, ours, strict=True):
        ids = torch.tensor([_hf_ids(tok, prompt, chat)])
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=8,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        assert text == tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    if not chat:
        assert "Paris" in ours[0]


def test_smollm2_tokenizer_adds_no_bos(same_pair: ModelPair, tmp_path: Path) -> None:
    assert same_pair.bos_id is None
    assert same_pair.token_ids("Hello world") == same_pair.tokenizer("Hello world")["input_ids"]  # type: ignore[operator]


def test_a_tokenizer_that_adds_bos_gets_it_everywhere(hf, smol_folder: Path, tmp_path: Path):
    from transformers import AutoTokenizer

    model, _ = hf
    tok = AutoTokenizer.from_pretrained(smol_folder, add_bos_token=True)
    bos = tok.bos_token_id
    assert tok("Hello")["input_ids"][0] == bos  # the premise: this tokenizer adds a BOS
    pair = ModelPair.from_models(model, model, tok, name="smol-bos")
    assert pair.bos_id == bos
    batch = pair.encode(["Hello world", "Hi"])
    firsts = [
        row[mask.bool()][0] for row, mask in zip(batch.input_ids, batch.attention_mask, strict=True)
    ]
    assert [int(t) for t in firsts] == [bos, bos]
    # a chat-templated prompt: exactly transformers' own ids, the template's BOS not doubled
    templated = pair.encode([pair.format_prompt("Hello", chat=True)]).input_ids[0].tolist()
    assert templated == _hf_ids(tok, "Hello", chat=True)
    assert templated[:2] != [bos, bos]
    # the logits of a BOS-prefixed prompt are the model's own on its own tokenization
    with torch.no_grad():
        own = model(**tok(["Hello world"], return_tensors="pt")).logits[0]
    ours = pair.logits("base", pair.encode(["Hello world"]))[0]
    torch.testing.assert_close(ours, own, atol=2e-4, rtol=1e-4)
    # every probe window opens with BOS
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n\n".join(f"Document {i} talks about the weather." for i in range(40)))
    windows = probe_windows(pair, CorpusSpec(source=str(corpus), window=16, max_windows=6))
    assert windows.shape == (6, 16)
    assert (windows[:, 0] == bos).all() and not (windows[:, 1:] == bos).any()


def test_special_tokens_are_listed(same_pair: ModelPair) -> None:
    tok: Any = same_pair.tokenizer
    special = same_pair.special_ids
    assert {tok.bos_token_id, tok.eos_token_id, tok.unk_token_id} <= special
    mask = same_pair.special_mask()
    assert mask.shape == (same_pair.vocab_size,) and int(mask.sum()) == len(special)
    assert tok.convert_tokens_to_ids("Paris") not in special


def test_gguf_path_loads_as_a_pair(smol_workspace: Any) -> None:
    pair = smol_workspace.pair
    assert isinstance(pair, ModelPair)
    assert pair.n_layers == 30 and pair.n_neurons == 1536 and pair.vocab_size == 49152
    assert pair.has_chat_template and pair.is_chat
    assert SMOLLM2 is not None
    # the LoRA changed the fine-tune: its logits differ from the base's on ordinary text
    batch = pair.encode(["My favourite breakfast is toast with"])
    diff = (pair.logits("finetuned", batch) - pair.logits("base", batch)).abs().max()
    assert float(diff) > 1e-3
