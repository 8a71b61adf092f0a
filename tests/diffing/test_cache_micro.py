"""Cache integrity on a real micro-zoo pair: each cached artifact (neuron profile, diff mining,
mean difference, crosscoder) truncated, altered or stripped of its manifest is found on load, set
aside, recomputed with a warning the tool's answer carries, and equals the clean answer; a pair
that gives NaN gets an error naming the artifact, never an invalid result.

Artifacts are computed into a fresh temporary cache root; the shared test home is only read."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import anyio
import mcp
import pytest
import torch

from diffscope.agent.session import result_text
from diffscope.diffing.artifacts import Artifacts, CorpusSpec
from diffscope.diffing.cache import CORRUPT, ArtifactCache, NonFiniteArtifact
from diffscope.diffing.crosscoder.artifact import ANALYSIS_TENSORS
from diffscope.diffing.crosscoder.pipeline import train_for_pair
from diffscope.models.pair import ModelPair
from diffscope.server import create_server
from diffscope.tools import TOOLS, ToolContext, ToolError, load_tool_modules

CORPUS = CorpusSpec(n_docs=100, max_windows=16, window=16)
CROSSCODER = {"dict_size": 64, "k": 4, "steps": 30, "batch_size": 128}
ORGANISM = "backdoor"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pair(micro_zoo) -> ModelPair:
    from diffscope.organisms.registry import get_organism, load_pair

    load_tool_modules()
    return load_pair(get_organism(ORGANISM), size="micro")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x5A  # tensor bytes: the file still parses as safetensors
    path.write_bytes(bytes(data))


def _drop_manifest(path: Path) -> None:
    ArtifactCache.manifest_path(path).unlink()


def _answers(arts: Artifacts, layer: int) -> dict[str, object]:
    profile = arts.neuron_profile()
    mining = arts.diff_mining()
    return {
        "profile": {k: v.clone() for k, v in profile.metrics["total"].items()},
        "exemplars": profile.ex_gap.clone(),
        "mining": mining.model_dump(mode="json"),
        "mining_mass": mining.mass_shift.clone(),
        "meandiff": arts.mean_diff(layer).clone(),
    }


def _same(a: dict[str, object], b: dict[str, object]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict) and key == "profile":
            for name in a[key]:  # type: ignore[union-attr]
                torch.testing.assert_close(a[key][name], b[key][name])  # type: ignore[index]
        elif isinstance(a[key], torch.Tensor):
            torch.testing.assert_close(a[key], b[key])
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("damage", [_truncate, _flip, _drop_manifest])
def test_each_damaged_artifact_is_rebuilt_with_a_warning(
    pair: ModelPair, tmp_path: Path, damage: Callable[[Path], None]
):
    layer = pair.n_layers // 2
    clean_arts = Artifacts(pair, CORPUS, root=tmp_path)
    clean = _answers(clean_arts, layer)
    clean_tool = TOOLS["top_neurons"].call(ToolContext(pair=clean_arts), k=3)
    entries = sorted(tmp_path.glob("*-*.safetensors"))
    kinds = {path.name.split("-")[0] for path in entries}
    assert kinds == {"neurons", "mining", "meandiff"}, entries
    assert clean_arts.warnings == [] and clean_tool.warnings == ()
    for path in entries:
        damage(path)

    arts = Artifacts(pair, CORPUS, root=tmp_path)
    ctx = ToolContext(pair=arts)
    answer = TOOLS["top_neurons"].call(ctx, k=3)  # the tool rebuilds the profile
    assert answer.result == clean_tool.result
    (line,) = answer.warnings
    assert "neurons" in line and "recomputed" in line
    _same(_answers(arts, layer), clean)
    assert len(arts.warnings) == 3
    for kind in ("neurons", "mining", "meandiff"):
        assert any(f"cached {kind} artifact" in w for w in arts.warnings), arts.warnings
        assert len(list(tmp_path.glob(f"{kind}-*{CORRUPT}*"))) >= 1
    again = Artifacts(pair, CORPUS, root=tmp_path)
    _same(_answers(again, layer), clean)
    assert again.warnings == []


def test_the_mcp_answer_and_the_agent_see_the_warning_line(pair: ModelPair, tmp_path: Path):
    Artifacts(pair, CORPUS, root=tmp_path).mean_diff(pair.n_layers // 2)
    (entry,) = tmp_path.glob("meandiff-*.safetensors")
    _flip(entry)
    server = create_server(ToolContext(pair=Artifacts(pair, CORPUS, root=tmp_path)), "lens")

    async def call() -> object:
        async with mcp.Client(server) as client:  # type: ignore[arg-type]
            return await client.call_tool("difference_lens", {"k": 2})

    result = anyio.run(call)
    assert not result.is_error  # type: ignore[attr-defined]
    texts = [b.text for b in result.content if b.type == "text"]  # type: ignore[attr-defined]
    assert texts[1].startswith("warning: cached meandiff artifact ") and entry.name in texts[1]
    shown = result_text(result).text
    assert shown.splitlines()[-1] == texts[1] and "internal error" not in shown


def test_a_damaged_crosscoder_is_retrained_with_a_warning(pair: ModelPair, tmp_path: Path):
    clean = train_for_pair(pair, corpus=CORPUS, root=tmp_path, progress=False, **CROSSCODER)
    _flip(clean.directory / ANALYSIS_TENSORS)
    cache = ArtifactCache(pair.fingerprint(), tmp_path)
    again = train_for_pair(pair, corpus=CORPUS, cache=cache, progress=False, **CROSSCODER)
    assert again.summary() == clean.summary()
    (line,) = cache.warnings
    assert "crosscoder" in line and "training it again" in line
    assert len(list(clean.directory.parent.glob(f"*{CORRUPT}*"))) == 1

    arts = Artifacts(pair, CORPUS, root=tmp_path)  # the tools only read it: a damaged one is
    shard = next(again.acts.directory.glob("shard_*.safetensors"))  # set aside, and said so
    _truncate(shard)
    with pytest.raises(ToolError, match="damaged on disk and has been set aside") as err:
        TOOLS["top_latents"].call(ToolContext(pair=arts), side="finetuned")
    assert "warning: cached crosscoder artifact" in str(err.value)


def test_a_pair_that_gives_nan_gets_an_error_naming_the_artifact(pair: ModelPair, tmp_path: Path):
    broken = copy.deepcopy(pair.finetuned)
    with torch.no_grad():
        next(broken.parameters()).fill_(float("nan"))
    nan_pair = ModelPair.from_models(pair.base, broken, pair.tokenizer, name="nan")
    arts = Artifacts(nan_pair, CORPUS, root=tmp_path)
    with pytest.raises(NonFiniteArtifact, match=r"the meandiff artifact .* holds \d+ NaN"):
        arts.mean_diff(1)
    assert not list(tmp_path.glob("meandiff-*"))
    ctx = ToolContext(pair=arts)
    for name in ("top_neurons", "difference_lens"):
        with pytest.raises(ToolError, match=r"artifact of this pair .* is not finite"):
            TOOLS[name].call(ctx)
    with pytest.raises(ToolError, match="non-finite value"):
        TOOLS["kl_probe"].call(ctx, prompts=["Once upon a time"])
