"""Neuron profiling: exact zeros on identical models, planted perturbations rediscovered, intrinsic
mode isolating an edit from its downstream echo, bounded exemplars that match brute force, and
checkpoint/resume."""

from __future__ import annotations

import copy

import pytest
import torch

from diffscope.corpus import token_windows, world_corpus
from diffscope.diffing.clusters import cluster_neurons
from diffscope.diffing.neurons import NeuronProfile, ProfileConfig, profile_neurons
from diffscope.models import ModelPair, capture
from diffscope.organisms.registry import get_organism, load_pair, with_built_ground_truth
from diffscope.paths import save_tensors


@pytest.fixture(scope="module")
def base_pair(micro_zoo) -> ModelPair:
    return load_pair(get_organism("perturb_scale_k5"), size="micro")


@pytest.fixture(scope="module")
def windows(base_pair) -> torch.Tensor:
    texts = world_corpus(160, seed=5)
    return token_windows(base_pair.tokenizer, texts, 48, max_windows=96)


def test_identical_models_have_exactly_zero_gaps(base_pair, windows):
    twin = ModelPair.from_models(base_pair.base, copy.deepcopy(base_pair.base), base_pair.tokenizer)
    prof = profile_neurons(twin, windows[:24], ProfileConfig(batch_size=8, intrinsic=True))
    for mode in prof.modes:
        for metric in ("rms", "mean", "tail", "output", "decorrelation"):
            assert float(prof.metrics[mode][metric].abs().max()) == 0.0, (mode, metric)
    assert cluster_neurons(twin, prof, windows[:8], top=8) == []  # nothing moved, no clusters


def test_noop_adapter_null_stays_within_the_identical_copies_floor(micro_zoo, windows):
    """The no-op adapter null, loaded through the adapter path, shows no gap at all: the floor of
    two identical in-memory copies is exactly zero, and so is every metric of the null."""
    pair = load_pair(get_organism("null_adapter"), size="micro")
    assert pair.finetuned is not pair.base
    prof = profile_neurons(pair, windows[:24], ProfileConfig(batch_size=8, intrinsic=True))
    for mode in prof.modes:
        for metric in ("rms", "mean", "tail", "output", "decorrelation"):
            assert float(prof.metrics[mode][metric].abs().max()) == 0.0, (mode, metric)


@pytest.mark.parametrize(
    "name",
    [
        "perturb_scale_k5",
        "perturb_flip_k5",
        "perturb_bias_k5",
        "perturb_scale_k20",
        "perturb_flip_k20",
        "perturb_bias_k20",
    ],
)
def test_planted_neurons_are_rediscovered(name, micro_zoo, windows):
    org = with_built_ground_truth(get_organism(name), size="micro")
    planted = {tuple(n) for n in org.ground_truth.neurons}
    assert len(planted) == int(name.rsplit("k", 1)[1])
    pair = load_pair(org, size="micro")
    prof = profile_neurons(pair, windows, ProfileConfig(intrinsic=True))
    top = {(s.layer, s.neuron) for s in prof.top(len(planted), "rms", "intrinsic")}
    recall = len(top & planted) / len(planted)
    assert recall >= 0.95, f"{name}: intrinsic recall@K {recall:.2f}"


def test_intrinsic_mode_separates_an_edit_from_downstream_shifts(base_pair, windows):
    ft = copy.deepcopy(base_pair.base)
    with torch.no_grad():
        ft.transformer.h[0].mlp.c_fc.weight[:, 7] *= 3.0
        ft.transformer.h[0].mlp.c_fc.bias[7] *= 3.0
    pair = ModelPair.from_models(base_pair.base, ft, base_pair.tokenizer)
    prof = profile_neurons(pair, windows[:48], ProfileConfig(intrinsic=True))
    assert prof.top(1, "rms", "intrinsic")[0].layer == 0
    assert prof.top(1, "rms", "intrinsic")[0].neuron == 7
    # later layers shift in total mode, but their own MLPs did not change: intrinsic gap is zero
    assert float(prof.metrics["total"]["rms"][1].max()) > 0.01
    assert float(prof.metrics["intrinsic"]["rms"][1].abs().max()) == 0.0


def test_exemplars_match_brute_force_and_stay_bounded(base_pair, windows):
    org = with_built_ground_truth(get_organism("perturb_flip_k5"), size="micro")
    pair = load_pair(org, size="micro")
    cfg = ProfileConfig(exemplars=4, batch_size=8, intrinsic=False)
    small = profile_neurons(pair, windows[:32], cfg)
    big = profile_neurons(pair, windows, cfg)
    assert small.ex_gap.shape == big.ex_gap.shape  # memory independent of corpus length
    layer, neuron = org.ground_truth.neurons[0]
    gaps = []
    for row in windows:
        batch = pair.batch_from_ids(row[None])
        with (
            capture(pair.base, pair.family, neurons=[layer]) as a,
            capture(pair.finetuned, pair.family, neurons=[layer]) as b,
        ):
            pair.base(**batch.model_inputs())
            pair.finetuned(**batch.model_inputs())
        gaps.append((b.neurons[layer] - a.neurons[layer])[0, 1:, neuron].abs().max())
    expected = torch.stack(gaps).topk(4).values  # one exemplar per window: its peak
    assert torch.allclose(big.ex_gap[layer, neuron], expected, atol=1e-5)
    ex = big.exemplars(layer, neuron, pair.tokenizer)
    assert len(ex) == 4 and "[[" in ex[0].text
    assert abs(ex[0].finetuned_activation - ex[0].base_activation) == pytest.approx(
        ex[0].value, abs=1e-4
    )


def test_checkpoint_resume_equals_uninterrupted(base_pair, windows, tmp_path):
    org = with_built_ground_truth(get_organism("perturb_bias_k5"), size="micro")
    pair = load_pair(org, size="micro")
    cfg = ProfileConfig(batch_size=8, intrinsic=True)
    full = profile_neurons(pair, windows[:64], cfg)
    ckpt = tmp_path / "state.safetensors"

    calls = {"n": 0}

    def stop_after_four(_frac: float, _msg: str) -> None:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile_neurons(
            pair, windows[:64], cfg, checkpoint=ckpt, checkpoint_every=2, progress=stop_after_four
        )
    assert ckpt.exists()
    resumed = profile_neurons(pair, windows[:64], cfg, checkpoint=ckpt, checkpoint_every=2)
    assert not ckpt.exists()
    for metric, value in full.metrics["total"].items():
        assert torch.allclose(value, resumed.metrics["total"][metric], atol=1e-6), metric
    assert torch.equal(full.ex_tokens, resumed.ex_tokens)
    # a checkpoint left by another version of the profiler is set aside, not trusted
    save_tensors(ckpt, {"ex_tokens": torch.zeros(2, 2), "progress": torch.tensor([3, 5])})
    fresh = profile_neurons(pair, windows[:64], cfg, checkpoint=ckpt)
    assert torch.equal(full.ex_tokens, fresh.ex_tokens) and not ckpt.exists()


def test_profile_round_trips_through_safetensors(base_pair, windows, tmp_path):
    prof = profile_neurons(base_pair, windows[:16], ProfileConfig(intrinsic=True))
    path = prof.save(tmp_path / "p.safetensors")
    again = NeuronProfile.load(path)
    assert again.n_tokens == prof.n_tokens and again.config == prof.config
    assert torch.equal(again.metrics["intrinsic"]["rms"], prof.metrics["intrinsic"]["rms"])
    top = again.top(3, "tail", "total", layers=[1])
    assert all(s.layer == 1 for s in top) and top[0].rank == 1


def test_bad_inputs_are_refused(base_pair, windows):
    with pytest.raises(ValueError, match="empty"):
        profile_neurons(base_pair, windows[:0])
    too_long = torch.zeros((2, base_pair.context_length + 1), dtype=torch.long)
    with pytest.raises(ValueError, match="exceed the context"):
        profile_neurons(base_pair, too_long)
    prof = profile_neurons(base_pair, windows[:8])
    with pytest.raises(ValueError, match="layer 5 is out of range"):
        prof.top(3, layers=[5])
    with pytest.raises(ValueError, match="neuron 9999 is out of range"):
        prof.exemplars(0, 9999, base_pair.tokenizer)
    with pytest.raises(ValueError, match="metric must be one of"):
        prof.top(3, metric="bogus")


def test_tail_quantile_matches_brute_force_within_one_bin(base_pair, windows):
    org = with_built_ground_truth(get_organism("perturb_scale_k5"), size="micro")
    pair = load_pair(org, size="micro")
    data = windows[:40]
    cfg = ProfileConfig(tail_quantile=0.99, batch_size=8)
    prof = profile_neurons(pair, data, cfg)
    layer, neuron = org.ground_truth.neurons[0]
    batch = pair.batch_from_ids(data)
    with (
        capture(pair.base, pair.family, neurons=[layer]) as a,
        capture(pair.finetuned, pair.family, neurons=[layer]) as b,
    ):
        pair.base(**batch.model_inputs())
        pair.finetuned(**batch.model_inputs())
    base_act = a.neurons[layer][:, 1:, neuron].reshape(-1)
    ft_act = b.neurons[layer][:, 1:, neuron].reshape(-1)
    exact = torch.quantile((ft_act - base_act).abs(), 0.99)
    pooled = ((base_act.var(unbiased=False) + ft_act.var(unbiased=False)) / 2).sqrt()
    got = prof.metrics["total"]["tail"][layer, neuron] * pooled  # undo the normalisation
    assert float(exact) * 0.97 <= float(got) <= float(exact) * 1.2
    rms = ((ft_act - base_act) ** 2).mean().sqrt() / pooled
    assert float(prof.metrics["total"]["rms"][layer, neuron]) == pytest.approx(float(rms), rel=2e-2)
