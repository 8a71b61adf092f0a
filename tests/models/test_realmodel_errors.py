"""Bad real-model inputs through ModelPair: a GGUF of an architecture transformers cannot load, a
truncated GGUF, and peft adapters made for another base each give a clear PairLoadError, and
nothing half-written is left in the GGUF cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from realsupport import SMOLLM2, needs_smollm2

from diffscope.models import ModelPair, PairLoadError
from diffscope.workspace import PairSpec, check_sources

gguf = pytest.importorskip("gguf", reason="the `gguf` package is not installed (pip install gguf)")


def _cache_state(home: Path) -> set[str]:
    """Every path under the cache's GGUF folder but the hash memo (what a failed load may not add;
    the artifacts folder is left out: other test processes may share this home)."""
    root = home / "gguf"
    if not root.exists():
        return set()
    found = {str(p.relative_to(home)) for p in root.rglob("*") if p.name != "hashes.json"}
    assert not [p for p in found if "/.tmp-" in p], found  # no half-written conversion
    return found


def _unsupported_gguf(path: Path) -> Path:
    writer = gguf.GGUFWriter(str(path), "rwkv7")
    writer.add_block_count(1)
    writer.add_context_length(16)
    writer.add_embedding_length(8)
    writer.add_tensor("blk.0.w.weight", np.ones((16, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_unsupported_architecture_is_a_clear_error(tmp_path: Path, diffscope_home: Path) -> None:
    bad = _unsupported_gguf(tmp_path / "odd.gguf")
    before = _cache_state(diffscope_home)
    check_sources(PairSpec(base=str(bad), finetuned=str(bad)))  # a .gguf file passes the check
    with pytest.raises(PairLoadError, match=r"base model .*odd\.gguf.*'rwkv7'.*cannot load"):
        ModelPair.load(str(bad), str(bad))
    assert _cache_state(diffscope_home) == before


@needs_smollm2
def test_truncated_gguf_is_a_clear_error(tmp_path: Path, diffscope_home: Path) -> None:
    assert SMOLLM2 is not None
    cut = tmp_path / "cut.gguf"
    with open(SMOLLM2, "rb") as src:
        cut.write_bytes(src.read(3 * 2**20))  # header and tensor table whole, tensors cut off
    before = _cache_state(diffscope_home)
    with pytest.raises(PairLoadError, match=r"fine-tuned model .*cut\.gguf.*truncated or corrupt"):
        ModelPair.load(str(SMOLLM2), str(cut))
    assert _cache_state(diffscope_home) == before


def test_missing_gguf_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PairLoadError, match="no GGUF file at"):
        ModelPair.load(str(tmp_path / "none.gguf"), adapter=str(tmp_path))


def _adapter_for(model: Any, out: Path, targets: list[str], declared: str) -> Path:
    from peft import LoraConfig, get_peft_model

    model.name_or_path = declared  # what peft records as the adapter's base_model_name_or_path
    peft_model: Any = get_peft_model(model, LoraConfig(r=4, target_modules=targets))
    with torch.no_grad():  # non-zero B so a silently dropped adapter would be visible
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.fill_(0.01)
    peft_model.save_pretrained(out)
    return out


@needs_smollm2
def test_adapter_with_other_shapes_is_a_clear_error(
    smol_folder: Path, tmp_path: Path, diffscope_home: Path
) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    assert SMOLLM2 is not None
    small = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=49152,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
        )
    )
    adapter = _adapter_for(small, tmp_path / "lora", ["q_proj", "v_proj"], "tiny-llama-64")
    before = _cache_state(diffscope_home)
    with pytest.raises(PairLoadError, match=r"does not fit this base.*'tiny-llama-64'.*--base"):
        ModelPair.load(str(SMOLLM2), adapter=str(adapter))
    assert _cache_state(diffscope_home) == before


@needs_smollm2
def test_adapter_for_another_architecture_is_a_clear_error(
    smol_folder: Path, tmp_path: Path
) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    assert SMOLLM2 is not None
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=100))
    adapter = _adapter_for(gpt2, tmp_path / "lora", ["c_attn"], "toy-gpt2")
    with pytest.raises(PairLoadError, match=r"peft adapter .*'toy-gpt2'"):
        ModelPair.load(str(SMOLLM2), adapter=str(adapter))
