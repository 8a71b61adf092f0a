"""Activation-difference lens: the mean difference recovers a planted residual shift, the logit lens
reads a token's unembedding row back as that token, and patchscope answers at every scale."""

from __future__ import annotations

import math

import pytest
import torch

from diffscope.diffing.lens import logit_lens, mean_diff, patchscope

SCALES = (0.5, 4.0, 64.0, 200.0)


def test_mean_diff_recovers_planted_shift(resid_pair, resid_vector, diff_windows, same_pair):
    seen: list[float] = []
    diff = mean_diff(
        resid_pair,
        diff_windows,
        0,
        positions=5,
        batch_size=5,
        progress=lambda f, _m: seen.append(f),
    )
    assert diff.shape == (5, 32) and seen[-1] == 1.0
    assert torch.allclose(diff, resid_vector.expand(5, -1), atol=1e-4)
    later = mean_diff(resid_pair, diff_windows, -1, positions=3)
    assert later.shape == (3, 32) and float(later.norm()) > 0.1
    assert float(mean_diff(same_pair, diff_windows, 1, positions=3).abs().max()) == 0.0


def test_mean_diff_on_texts_of_uneven_length(resid_pair, resid_vector):
    diff = mean_diff(resid_pair, ["the sea", "the cat sat on the mat"], 0, positions=30)
    n_short = len(resid_pair.tokenizer("the sea")["input_ids"])
    n_long = len(resid_pair.tokenizer("the cat sat on the mat")["input_ids"])
    assert torch.allclose(diff[:n_short], resid_vector.expand(n_short, -1), atol=1e-4)
    assert torch.allclose(diff[:n_long], resid_vector.expand(n_long, -1), atol=1e-4)
    assert bool(torch.isnan(diff[n_long:]).all())


def test_logit_lens_reads_unembedding_row(resid_pair, chosen_tokens):
    x = chosen_tokens[0]
    row = resid_pair.finetuned.lm_head.weight[x].detach()
    lens = logit_lens(resid_pair, row, k=5)
    assert lens.positive[0].token_id == x and lens.positive[0].token == resid_pair.token_str(x)
    assert x not in {t.token_id for t in lens.negative}
    assert len(lens.positive) == len(lens.negative) == 5
    assert math.isclose(lens.norm, float(row.norm()), rel_tol=1e-5)
    assert lens.positive[0].logit >= lens.positive[-1].logit
    with pytest.raises(ValueError, match="shape"):
        logit_lens(resid_pair, torch.ones(7))
    with pytest.raises(ValueError, match="k must be"):
        logit_lens(resid_pair, row, k=0)


def test_patchscope_answers_at_every_scale(resid_pair, chosen_tokens):
    x = chosen_tokens[0]
    row = resid_pair.finetuned.lm_head.weight[x].detach()
    result = patchscope(resid_pair, row, layer=-1, scales=SCALES, k=5)
    assert [s.scale for s in result.scales] == list(SCALES) and result.layer == 1
    for reading in result.scales:
        assert len(reading.top) == len(result.prompts) == 3
        assert all(len(top) == 5 for top in reading.top)
        assert 0.0 <= reading.consistency <= 1.0
        assert len(reading.common) == round(reading.consistency * 5)
    # patched after the last block, a large copy of the row reads back as its token in every prompt
    assert result.scales[-1].common[0] == resid_pair.token_str(x)
    assert result.best_scale in SCALES and result.best_tokens
    mid = patchscope(resid_pair, row, layer=0, scales=(1.0, 8.0), k=3, which="base")
    assert mid.which == "base" and len(mid.scales) == 2


def test_patchscope_bad_arguments(resid_pair):
    vec = torch.ones(32)
    with pytest.raises(ValueError, match="out of range"):
        patchscope(resid_pair, vec, layer=5)
    with pytest.raises(ValueError, match="positive"):
        patchscope(resid_pair, vec, layer=0, scales=(1.0, -2.0))
    with pytest.raises(ValueError, match="zero vector"):
        patchscope(resid_pair, torch.zeros(32), layer=0)
    with pytest.raises(ValueError, match="out of range"):
        mean_diff(resid_pair, ["the sea"], 9)
