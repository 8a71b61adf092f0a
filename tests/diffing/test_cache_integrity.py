"""Cache integrity on small synthetic entries: manifests, damage found on load, set aside,
recomputed with a warning; non-finite values refused; folder entries sealed and checked; the
warning lines reaching a tool's answer (in process and over MCP) and NaN results as errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import anyio
import mcp
import pytest
import torch
from pydantic import BaseModel
from safetensors.torch import load_file

from diffscope.agent.session import result_text
from diffscope.diffing.cache import (
    CORRUPT,
    SEAL,
    ArtifactCache,
    NonFiniteArtifact,
    non_finite,
    safetensors_problem,
    write_manifest,
)
from diffscope.paths import save_tensors
from diffscope.server import create_server
from diffscope.tools import ToolContext, ToolError, ToolRegistry


def _entry(cache: ArtifactCache, calls: list[Path], value: torch.Tensor | None = None):
    def compute(path: Path) -> torch.Tensor:
        calls.append(path)
        return torch.arange(64, dtype=torch.float32) if value is None else value

    return cache.get(
        "meandiff",
        ({"layer": 1},),
        compute,
        lambda p, v: save_tensors(p, {"v": v}),
        lambda p: load_file(str(p))["v"],
        lambda v: non_finite({"v": v}),
    )


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-40])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-9] ^= 0xFF  # inside the tensor data: the file still parses
    path.write_bytes(bytes(data))


def _drop_manifest(path: Path) -> None:
    ArtifactCache.manifest_path(path).unlink()


def test_an_entry_gets_a_manifest_with_size_and_sha256(tmp_path: Path):
    cache = ArtifactCache("abc", tmp_path)
    calls: list[Path] = []
    _entry(cache, calls)
    (path,) = calls
    manifest = json.loads(ArtifactCache.manifest_path(path).read_text())
    record = manifest["files"][path.name]
    assert record["bytes"] == path.stat().st_size and len(record["sha256"]) == 64
    assert manifest["kind"] == "meandiff" and cache.warnings == []


@pytest.mark.parametrize("damage", [_truncate, _flip, _drop_manifest])
def test_a_damaged_entry_is_set_aside_and_recomputed_with_a_warning(tmp_path: Path, damage):
    calls: list[Path] = []
    clean = _entry(ArtifactCache("abc", tmp_path), calls)
    (path,) = calls
    damage(path)
    heard: list[str] = []
    cache = ArtifactCache("abc", tmp_path)
    cache.on_warning = heard.append
    again = _entry(cache, calls)
    torch.testing.assert_close(again, clean)
    assert len(calls) == 2 and heard == cache.warnings and len(heard) == 1
    assert path.name in heard[0] and "recomputed" in heard[0]
    assert [p for p in tmp_path.iterdir() if CORRUPT in p.name]
    fresh = ArtifactCache("abc", tmp_path)  # the rebuilt entry is whole again
    torch.testing.assert_close(_entry(fresh, calls), clean)
    assert len(calls) == 2 and fresh.warnings == []


def test_a_non_finite_value_is_refused_naming_the_artifact(tmp_path: Path):
    cache = ArtifactCache("abc", tmp_path)
    bad = torch.tensor([1.0, float("nan"), float("inf")])
    with pytest.raises(NonFiniteArtifact, match=r"meandiff artifact .*meandiff-.*1 NaN and 1 inf"):
        _entry(cache, [], bad)
    assert not list(tmp_path.glob("meandiff-*"))


def test_a_stored_non_finite_value_is_rebuilt(tmp_path: Path):
    calls: list[Path] = []
    clean = _entry(ArtifactCache("abc", tmp_path), calls)
    (path,) = calls
    save_tensors(path, {"v": torch.full((64,), float("nan"))})
    write_manifest(ArtifactCache.manifest_path(path), [path])  # checksums match the bad value
    cache = ArtifactCache("abc", tmp_path)
    torch.testing.assert_close(_entry(cache, calls), clean)
    assert len(calls) == 2 and "64 NaN" in cache.warnings[0]


def test_negative_infinity_can_be_a_sentinel():
    gaps = torch.tensor([2.0, -float("inf")])
    assert non_finite({"ex_gap": gaps}, allow_neg_inf=("ex_gap",)) is None
    assert "1 inf" in str(non_finite({"ex_gap": gaps}))
    assert "1 NaN" in str(non_finite({"ex_gap": torch.tensor([float("nan")])}, ("ex_gap",)))


def test_folder_entries_are_sealed_and_checked(tmp_path: Path):
    cache = ArtifactCache("abc", tmp_path)
    folder = cache.folder("acts", {"layer": 1}, name="acts-L1")
    folder.mkdir()
    save_tensors(folder / "shard_00000.safetensors", {"acts": torch.ones(8, 2, 4)})
    (folder / "manifest.json").write_text('{"rows": 8}')
    assert cache.check_folder("acts", folder) is None  # unsealed: whole, so sealed as found
    assert (folder / SEAL).exists() and cache.check_folder("acts", folder) is None
    _flip(folder / "shard_00000.safetensors")
    assert "sha256" in str(cache.check_folder("acts", folder))
    cache.reject("acts", [folder], "test", "collecting again")
    assert not folder.exists() and len(list(folder.parent.glob(f"acts-L1-*{CORRUPT}*"))) == 1
    assert "collecting again" in cache.warnings[0]


def test_an_unsealed_truncated_folder_is_not_adopted(tmp_path: Path):
    cache = ArtifactCache("abc", tmp_path)
    folder = tmp_path / "old"
    folder.mkdir()
    shard = folder / "shard_00000.safetensors"
    save_tensors(shard, {"acts": torch.ones(8, 2, 4)})
    _truncate(shard)
    assert "truncated" in str(safetensors_problem(shard))
    assert "truncated" in str(cache.check_folder("acts", folder))
    assert not (folder / SEAL).exists()


class Ratio(BaseModel):
    value: float


def _registry() -> ToolRegistry:
    reg = ToolRegistry()

    @reg.tool()
    def ratio(ctx: ToolContext, a: float = 1.0, b: float = 1.0) -> Ratio:
        """A ratio that warns when the cache had to rebuild something."""
        ctx.warn(f"rebuilt for {a}/{b}")
        return Ratio(value=a / b if b else math.inf)

    @reg.tool()
    def refuse(ctx: ToolContext) -> Ratio:
        """Warns, then fails."""
        ctx.warn("the entry was damaged")
        raise ToolError("cannot answer")

    return reg


def test_warnings_reach_the_tool_answer_and_nan_is_an_error():
    reg = _registry()
    ctx = ToolContext(pair=object())
    ctx.warn("found between calls")  # e.g. by background preparation
    first = reg["ratio"].call(ctx, a=1.0, b=2.0)
    assert first.result.value == 0.5
    assert first.warnings == ("found between calls", "rebuilt for 1.0/2.0")
    assert reg["ratio"].call(ctx, a=3.0, b=1.0).warnings == ("rebuilt for 3.0/1.0",)
    with pytest.raises(ToolError, match=r"ratio computed a non-finite value \(value = inf\)"):
        reg["ratio"].call(ctx, a=1.0, b=0.0)
    with pytest.raises(ToolError, match="cannot answer\nwarning: the entry was damaged"):
        reg["refuse"].call(ctx)


def test_the_mcp_result_carries_warning_lines_after_the_json():
    server = create_server(ToolContext(pair=object()), "method", registry=_registry())

    async def call() -> object:
        async with mcp.Client(server) as client:  # type: ignore[arg-type]
            return await client.call_tool("ratio", {"a": 1.0, "b": 4.0})

    result = anyio.run(call)
    texts = [b.text for b in result.content if b.type == "text"]  # type: ignore[attr-defined]
    assert json.loads(texts[0]) == {"value": 0.25}
    assert texts[1:] == ["warning: rebuilt for 1.0/4.0"]
    assert result_text(result).text.splitlines() == ['{"value":0.25}', texts[1]]
