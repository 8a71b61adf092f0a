"""Steering and amplification: directions from neurons and mean differences, steering that takes
over generation on a known direction, and amplification that equals the fine-tune at alpha 0 and
surfaces a weakly promoted token at large alpha."""

from __future__ import annotations

import pytest
import torch

from diffscope.diffing.steering import (
    Direction,
    amplify,
    mean_diff_direction,
    neuron_direction,
    residual_norm,
    steer,
)

PROMPTS = ["the cat sat on", "the sea was"]


def test_neuron_direction_is_the_output_row(resid_pair):
    d = neuron_direction(resid_pair, 1, 5)
    expected = resid_pair.finetuned.transformer.h[1].mlp.c_proj.weight[5]
    assert d.source == "neuron" and d.layer == 1 and torch.equal(d.vector, expected.detach())
    assert d.describe()["norm"] == pytest.approx(float(expected.detach().norm()))
    with pytest.raises(ValueError, match="neuron 64 is out of range"):
        neuron_direction(resid_pair, 0, 64)
    with pytest.raises(ValueError, match="out of range"):
        neuron_direction(resid_pair, 2, 0)


def test_mean_diff_direction_recovers_shift(resid_pair, resid_vector, diff_windows):
    d = mean_diff_direction(resid_pair, diff_windows, 0, positions=4)
    assert d.source == "mean_diff" and torch.allclose(d.vector, resid_vector, atol=1e-4)
    one = mean_diff_direction(resid_pair, diff_windows, 0, positions=4, position=2)
    assert torch.allclose(one.vector, resid_vector, atol=1e-4)
    with pytest.raises(ValueError, match="position"):
        mean_diff_direction(resid_pair, diff_windows, 0, positions=4, position=4)


def test_direction_validation():
    with pytest.raises(ValueError, match="source"):
        Direction(torch.ones(4), 0, source="bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one vector"):
        Direction(torch.ones(2, 4), 0)
    with pytest.raises(ValueError, match="zero vector"):
        Direction(torch.zeros(4), 0).unit()


def test_steering_takes_over_generation(resid_pair, chosen_tokens):
    x = chosen_tokens[0]
    row = resid_pair.finetuned.lm_head.weight[x].detach()
    direction = Direction(row, -1, label="token row")
    out = steer(resid_pair, PROMPTS, direction, 20.0, max_new_tokens=4)
    assert out.unsteered == resid_pair.generate("finetuned", PROMPTS, max_new_tokens=4)
    assert out.steered == [resid_pair.token_str(x) * 4] * 2
    assert out.unsteered != out.steered and out.layer == 1
    norm = residual_norm(resid_pair, PROMPTS, 1, "finetuned")
    assert out.resid_norm == pytest.approx(norm) and out.added_norm == pytest.approx(20 * norm)
    zero = steer(resid_pair, PROMPTS, direction, 0.0, which="base", max_new_tokens=4)
    assert zero.steered == zero.unsteered
    raw = steer(resid_pair, PROMPTS, direction, 2.0, max_new_tokens=2, normalise=False)
    assert raw.added_norm == pytest.approx(2 * direction.norm, rel=1e-5)


def test_steering_bounds(resid_pair):
    direction = Direction(torch.ones(32), 0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        steer(resid_pair, PROMPTS, direction, 1.0, max_new_tokens=1000)
    with pytest.raises(ValueError, match="over the limit"):
        steer(resid_pair, ["the cat sat on the mat " * 10], direction, 1.0, max_new_tokens=40)
    with pytest.raises(ValueError, match="d_model"):
        steer(resid_pair, PROMPTS, Direction(torch.ones(8), 0), 1.0)
    with pytest.raises(ValueError, match="prompts"):
        steer(resid_pair, [], direction, 1.0)


def test_amplify_alpha_zero_is_the_finetune(resid_pair):
    out = amplify(resid_pair, PROMPTS, alpha=0.0, max_new_tokens=6, temperature=0.0)
    plain = resid_pair.generate("finetuned", PROMPTS, max_new_tokens=6, temperature=0.0)
    assert [s[0] for s in out.samples] == plain
    base = resid_pair.generate("base", PROMPTS, max_new_tokens=6, temperature=0.0)
    assert base != plain
    assert amplify(resid_pair, PROMPTS, alpha=-1.0, max_new_tokens=6, temperature=0).samples == [
        [b] for b in base
    ]


def test_amplify_surfaces_weakly_promoted_token(logit_pair_factory, chosen_tokens):
    x = chosen_tokens[0]
    pair = logit_pair_factory({x: 0.5})
    x_str = pair.token_str(x)
    strong = amplify(pair, PROMPTS, alpha=30.0, n_samples=3, max_new_tokens=5, seed=1)
    assert len(strong.samples) == 2 and all(len(s) == 3 for s in strong.samples)
    assert all(text == x_str * 5 for group in strong.samples for text in group)
    plain = amplify(pair, PROMPTS, alpha=0.0, n_samples=3, max_new_tokens=5, seed=1)
    assert sum(t.count(x_str) for g in plain.samples for t in g) < 15
    with pytest.raises(ValueError, match="n_samples"):
        amplify(pair, PROMPTS, n_samples=0)
