"""Logit diff mining on known-answer pairs: promoted and demoted tokens come top with exact rates,
identical models mine nothing, topics are deterministic, and bad arguments are refused."""

from __future__ import annotations

import pytest
import torch

from diffscope.diffing.mining import mine_logit_diffs


def test_known_offsets_are_mined(logit_pair, chosen_tokens, diff_windows):
    x, y, z = chosen_tokens
    seen: list[float] = []
    mined = mine_logit_diffs(
        logit_pair,
        diff_windows,
        positions=10,
        top_k=5,
        batch_size=5,
        progress=lambda f, _m: seen.append(f),
    )
    assert mined.n_windows == 12 and mined.n_positions == 12 * 10 and seen[-1] == 1.0
    assert [s.token_id for s in mined.promoted] == [x, y]
    assert [s.token_id for s in mined.demoted] == [z]
    top = mined.promoted[0]
    assert top.occurrence == 1.0 and top.frac_positive == 1.0
    assert top.mean_diff == pytest.approx(6.0, abs=1e-4)
    assert top.token == logit_pair.token_str(x)
    assert mined.demoted[0].mean_diff == pytest.approx(-6.0, abs=1e-4)
    assert mined.demoted[0].frac_positive == 0.0
    assert float(mined.mean_diff[y]) == pytest.approx(4.0, abs=1e-4)
    assert mined.occurrence.shape == (len(logit_pair.tokenizer),)
    assert mined.topics and mined.topics[0].tokens[0].token_id == x
    assert sum(t.weight for t in mined.topics) == pytest.approx(1.0)
    dumped = mined.model_dump()
    assert "occurrence" not in dumped and dumped["promoted"][0]["token_id"] == x


def test_mass_shift_equals_a_direct_computation(logit_pair, chosen_tokens, diff_windows):
    x, y, z = chosen_tokens
    mined = mine_logit_diffs(logit_pair, diff_windows, positions=10, top_k=5, n_topics=0)
    rows = diff_windows[:, :10]
    with torch.no_grad():
        p_base = logit_pair.base(input_ids=rows).logits.softmax(-1).mean((0, 1)).double()
        p_ft = logit_pair.finetuned(input_ids=rows).logits.softmax(-1).mean((0, 1)).double()
    eps = 2.0 / p_base.shape[0]
    expected = ((p_ft + eps) / (p_base + eps)).log()
    assert torch.allclose(mined.mass_shift.double(), expected, atol=1e-5)
    ranked = mined.ranked(logit_pair, "mass_shift", 2)
    assert [s.token_id for s in ranked] == [x, y] and ranked[0].mass_shift > ranked[1].mass_shift
    assert mined.ranked(logit_pair, "mass_shift", 1, promoted=False)[0].token_id == z
    assert mined.promoted[0].mass_shift == pytest.approx(float(expected[x]), abs=1e-5)
    with pytest.raises(ValueError, match="order_by"):
        mined.ranked(logit_pair, "loudness", 3)  # type: ignore[arg-type]


def test_identical_models_mine_nothing(same_pair, diff_windows):
    mined = mine_logit_diffs(same_pair, diff_windows, positions=8, top_k=10)
    assert mined.promoted == [] and mined.demoted == [] and mined.topics == []
    assert float(mined.mean_diff.abs().max()) == 0.0
    assert float(mined.mass_shift.abs().max()) == 0.0


def test_topics_are_seeded_and_texts_are_cut(resid_pair):
    texts = ["the cat sat on the mat and the dog ran", "the sea", "a baker made bread"]
    runs = [
        mine_logit_diffs(resid_pair, texts, positions=6, top_k=20, n_topics=2, seed=3)
        for _ in range(2)
    ]
    lengths = [min(6, len(resid_pair.tokenizer(t)["input_ids"])) for t in texts]
    assert runs[0].n_positions == sum(lengths)
    assert len(runs[0].topics) == 2
    assert runs[0].model_dump() == runs[1].model_dump()
    assert all(topic.tokens for topic in runs[0].topics)
    assert runs[0].promoted and all(s.occurrence > 0 for s in runs[0].promoted)


def test_bad_arguments(logit_pair, diff_windows):
    with pytest.raises(ValueError, match="top_k"):
        mine_logit_diffs(logit_pair, diff_windows, top_k=0)
    with pytest.raises(ValueError, match="positions"):
        mine_logit_diffs(logit_pair, diff_windows, positions=0)
    with pytest.raises(ValueError, match="mass_smoothing"):
        mine_logit_diffs(logit_pair, diff_windows, mass_smoothing=0.0)
    with pytest.raises(ValueError, match="empty"):
        mine_logit_diffs(logit_pair, [])
    with pytest.raises(ValueError, match="non-empty"):
        mine_logit_diffs(logit_pair, torch.zeros((0, 4), dtype=torch.long))
