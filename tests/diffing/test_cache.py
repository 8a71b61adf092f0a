"""The content-addressed artifact cache: keys, memo, disk, atomic safetensors entries."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffscope.diffing.cache import FORMATS, ArtifactCache
from diffscope.paths import save_tensors


def _entry(cache: ArtifactCache, calls: list[Path], value: float = 1.0):
    def compute(path: Path) -> torch.Tensor:
        calls.append(path)
        return torch.full((3,), value)

    return cache.get(
        "meandiff",
        ({"layer": 1},),
        compute,
        lambda p, v: save_tensors(p, {"v": v}),
        lambda p: load_file(str(p))["v"],
    )


def test_computes_once_then_serves_from_memory_and_disk(tmp_path: Path):
    calls: list[Path] = []
    cache = ArtifactCache("abc", tmp_path)
    first = _entry(cache, calls)
    again = _entry(cache, calls)
    assert again is first and len(calls) == 1
    assert calls[0].parent == tmp_path and calls[0].name.startswith("meandiff-")
    assert calls[0].suffix == ".safetensors" and calls[0].exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    fresh = ArtifactCache("abc", tmp_path)
    torch.testing.assert_close(_entry(fresh, calls, value=9.0), first)
    assert len(calls) == 1


def test_key_covers_fingerprint_config_and_format(tmp_path: Path, monkeypatch):
    a, b = ArtifactCache("abc", tmp_path), ArtifactCache("abd", tmp_path)
    assert a.key("neurons", {"x": 1}) != b.key("neurons", {"x": 1})
    assert a.key("neurons", {"x": 1}) != a.key("neurons", {"x": 2})
    assert a.key("neurons", {"x": 1}) != a.key("mining", {"x": 1})
    before = a.key("neurons", {"x": 1})
    monkeypatch.setitem(FORMATS, "neurons", FORMATS["neurons"] + 1)
    assert a.key("neurons", {"x": 1}) != before
    with pytest.raises(KeyError):
        a.key("nonsense")
