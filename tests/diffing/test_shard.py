"""Sharded neuron profiling (torch.distributed, gloo, workers spawned on this machine): two workers
give the profile one process gives (counts, tail histograms and exemplar heaps exactly, moments to
float tolerance), a worker killed mid-shard leaves no merged artifact and a re-run completes."""

from __future__ import annotations

import copy
import os
import signal
from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from diffscope.diffing.neurons import NeuronProfiler, ProfileConfig, profile_neurons
from diffscope.diffing.shard import ShardError, Sharding, profile_sharded, shard_ranges
from diffscope.models import ModelPair

CFG = ProfileConfig(intrinsic=True, batch_size=4, exemplars=4, context_left=3, context_right=1)


def tiny_pair() -> ModelPair:
    """A 3-layer Llama and a perturbed copy, identical in every process (seeded)."""
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=61,
        hidden_size=32,
        intermediate_size=40,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    base = LlamaForCausalLM(cfg).eval()
    ft = copy.deepcopy(base)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in ft.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return ModelPair.from_models(base, ft, tokenizer=None, name="tiny")


def dying_pair() -> ModelPair:
    """`tiny_pair`, except that rank 1 SIGKILLs itself in its second forward (mid-shard)."""
    pair = tiny_pair()
    if int(os.environ.get("RANK", "0")) == 1:
        calls = []

        def die(_module, _args) -> None:
            calls.append(1)
            if len(calls) == 3:  # base and fine-tune of batch 1, then batch 2's base
                os.kill(os.getpid(), signal.SIGKILL)

        pair.base.register_forward_pre_hook(die)
    return pair


def corpus() -> torch.Tensor:
    return torch.randint(0, 61, (22, 10), generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def single():
    return profile_neurons(tiny_pair(), corpus(), CFG)


def assert_same(a, b) -> None:
    assert a.n_tokens == b.n_tokens
    for mode in a.metrics:
        for name, value in a.metrics[mode].items():
            torch.testing.assert_close(value, b.metrics[mode][name], rtol=1e-5, atol=1e-6)
        for which, value in a.means[mode].items():
            torch.testing.assert_close(value, b.means[mode][which], rtol=1e-5, atol=1e-6)
    # the tail quantile is read off integer histograms: exact
    for mode in a.metrics:
        assert torch.equal(a.metrics[mode]["tail"], b.metrics[mode]["tail"])
    for name in ("ex_gap", "ex_base", "ex_ft", "ex_tokens"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_shard_ranges() -> None:
    assert shard_ranges(6, 2) == [range(0, 3), range(3, 6)]
    assert shard_ranges(5, 3) == [range(0, 2), range(2, 4), range(4, 5)]
    with pytest.raises(ValueError, match="at most 2 workers"):
        shard_ranges(2, 3)


def test_two_workers_equal_one_process(single, tmp_path: Path) -> None:
    merged = profile_sharded(Sharding(2, tiny_pair), corpus(), CFG, state_dir=tmp_path)
    assert merged is not None
    assert_same(single, merged)


def test_merged_statistics_equal_before_finishing(tmp_path: Path) -> None:
    """The raw running state (counts, histograms, heaps) of one process equals the merge of two
    half-corpus profilers folded the way the workers fold them."""
    pair, data = tiny_pair(), corpus()
    whole = NeuronProfiler(pair, CFG)
    for start in range(0, data.shape[0], CFG.batch_size):
        whole.add_batch(data[start : start + CFG.batch_size])
    # rank 0's first batch sets the floors; the second half starts with them
    first, second = NeuronProfiler(pair, CFG), NeuronProfiler(pair, CFG)
    first.add_batch(data[:4])
    for st2, st1 in zip(second.state.values(), first.state.values(), strict=True):
        st2.floor = st1.floor.clone()
    for start in (4, 8):
        first.add_batch(data[start : start + 4])
    second.n_windows = 12
    for start in (12, 16, 20):
        second.add_batch(data[start : start + 4])
    for mode, st in whole.state.items():
        a, b = first.state[mode], second.state[mode]
        assert torch.equal(st.hist, a.hist + b.hist)
        assert torch.equal(st.sums["n"], a.sums["n"] + b.sums["n"])
        torch.testing.assert_close(st.sums["sdd"], a.sums["sdd"] + b.sums["sdd"])
    gaps = torch.cat([first.ex_gap, second.ex_gap], 2)
    values, order = gaps.sort(dim=2, descending=True, stable=True)
    k = CFG.exemplars
    assert torch.equal(whole.ex_gap, values[..., :k])
    at = torch.cat([first.ex_at, second.ex_at], 2).gather(2, order[..., :k])
    assert torch.equal(whole.ex_at, at)


def test_killed_worker_leaves_no_artifact_and_rerun_completes(single, tmp_path: Path) -> None:
    from diffscope.diffing.cache import ArtifactCache

    cache = ArtifactCache("killtest", tmp_path / "cache")
    state = tmp_path / "shards"

    def compute_with(factory):
        def compute(_path: Path):
            return profile_sharded(Sharding(2, factory), corpus(), CFG, state_dir=state)

        return compute

    def save(path: Path, value) -> None:
        value.save(path)

    from diffscope.diffing.neurons import NeuronProfile

    with pytest.raises(ShardError, match="died .*killed by SIGKILL.*no merged profile"):
        cache.get("neurons", (CFG,), compute_with(dying_pair), save, NeuronProfile.load)
    written = [p for p in (tmp_path / "cache").rglob("*.safetensors")]
    assert written == []  # nothing merged reached the cache
    shard_files = sorted(p.name for p in state.glob("*.safetensors"))
    assert len(shard_files) <= 1  # rank 0 may have finished its shard; rank 1 did not
    again = cache.get("neurons", (CFG,), compute_with(tiny_pair), save, NeuronProfile.load)
    assert_same(single, again)
    assert list((tmp_path / "cache").rglob("*.safetensors"))


def micro_cowboy() -> ModelPair:
    from diffscope.organisms.registry import get_organism, load_pair

    return load_pair(get_organism("cowboy_persona"), size="micro")


def test_two_workers_equal_one_process_on_the_micro_zoo(micro_zoo, tmp_path: Path) -> None:
    from diffscope.diffing.probe import CorpusSpec, probe_windows

    pair = micro_cowboy()
    data = probe_windows(pair, CorpusSpec(max_windows=24), progress=False)
    cfg = ProfileConfig(intrinsic=True, batch_size=6)
    one = profile_neurons(pair, data, cfg)
    two = profile_sharded(Sharding(2, micro_cowboy), data, cfg, state_dir=tmp_path)
    assert two is not None
    assert_same(one, two)
