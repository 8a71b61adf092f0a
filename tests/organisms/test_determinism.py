"""The zoo builds the same whatever the caller's thread count: a tiny organism built twice, with 1
and with 2 threads, gives identical weights and check figures, and the caller's settings survive."""

from __future__ import annotations

import json

import torch

from diffscope.organisms.registry import zoo_root
from diffscope.organisms.training import ZOO_THREADS, ZooSize, deterministic
from diffscope.organisms.zoo import build_zoo, check_result

TINY = ZooSize(
    name="tiny",
    vocab_size=320,
    n_layer=1,
    n_embd=32,
    n_head=2,
    n_inner=64,
    n_positions=128,
    base_docs=200,
    base_steps=12,
    base_batch=8,
    base_lr=3e-3,
    ft_docs=60,
    ft_steps=8,
    ft_batch=8,
    ft_lr=2e-3,
    lora_rank=4,
)


def _build(home, threads: int, monkeypatch) -> dict:
    monkeypatch.setenv("DIFFSCOPE_HOME", str(home))
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results = build_zoo(TINY, only=["sad_stories", "music_lora"], progress=False)
        assert torch.get_num_threads() == threads  # restored after the build
    finally:
        torch.set_num_threads(saved)
    root = zoo_root("tiny")
    weights = {
        "base": _safetensors(root / "base" / "model" / "model.safetensors"),
        "music_lora": _safetensors(root / "music_lora" / "model" / "adapter_model.safetensors"),
    }
    checks = {r.name: (r.passed, r.margin, r.figures, r.reason) for r in results}
    return {"checks": checks, "weights": weights, "sad": check_result("sad_stories", "tiny")}


def _safetensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_builds_with_1_and_2_threads_are_identical(tmp_path, monkeypatch) -> None:
    one = _build(tmp_path / "one", 1, monkeypatch)
    two = _build(tmp_path / "two", 2, monkeypatch)
    assert one["checks"] == two["checks"]
    for name, tensors in one["weights"].items():
        assert tensors.keys() == two["weights"][name].keys()
        for key, value in tensors.items():
            assert torch.equal(value, two["weights"][name][key]), (name, key)
    sad = one["sad"]
    assert sad is not None and sad.margin is not None
    assert (sad.passed, sad.margin, sad.figures) == one["checks"]["sad_stories"][:3]
    record = json.loads(
        (tmp_path / "one" / "zoo" / "tiny" / "sad_stories" / "check.json").read_text()
    )
    assert set(record) >= {"passed", "margin", "figures", "reason"}


def test_check_result_is_none_for_an_unbuilt_organism(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DIFFSCOPE_HOME", str(tmp_path))
    assert check_result("sad_stories", "micro") is None


def test_deterministic_restores_the_callers_settings() -> None:
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with deterministic():
            assert torch.get_num_threads() == ZOO_THREADS
            assert torch.are_deterministic_algorithms_enabled()
        assert torch.get_num_threads() == 1
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(saved)
