"""KL probe: per-token KL equals a direct computation, vanishes for identical models, masks
padding, and the probe's top positions and moved tokens match a known-answer pair."""

from __future__ import annotations

import math

import pytest
import torch

from diffscope.diffing.kl import kl_per_token, kl_probe

PROMPTS = ["the cat sat on the mat", "the sea", "a baker made bread with flour and water"]


def test_kl_per_token_equals_direct_sum(resid_pair):
    batch = resid_pair.encode(PROMPTS)
    kl = kl_per_token(resid_pair, batch)
    p_ft = torch.softmax(resid_pair.logits("finetuned", batch).double(), -1)
    p_base = torch.softmax(resid_pair.logits("base", batch).double(), -1)
    direct = (p_ft * (p_ft.log() - p_base.log())).sum(-1)
    mask = batch.attention_mask.bool()
    assert kl.shape == batch.input_ids.shape
    assert torch.allclose(kl[mask].double(), direct[mask], atol=1e-5)
    assert bool((kl[mask] > 1e-4).all())
    assert bool((kl[~mask] == 0).all()) and bool((~mask).any())


def test_kl_is_zero_for_identical_models(same_pair, diff_windows):
    batch = same_pair.batch_from_ids(diff_windows[:4])
    assert float(kl_per_token(same_pair, batch).abs().max()) < 1e-6
    probe = kl_probe(same_pair, diff_windows[:4], k=3)
    assert probe.max < 1e-6 and probe.mean < 1e-6
    assert all(not pos.up and not pos.down for pos in probe.top)


def test_probe_known_answer_pair(logit_pair, chosen_tokens):
    x, y, z = chosen_tokens
    seen: list[float] = []
    probe = kl_probe(
        logit_pair, PROMPTS, k=4, top_tokens=3, batch_size=2, progress=lambda f, _m: seen.append(f)
    )
    lengths = [len(logit_pair.tokenizer(p)["input_ids"]) for p in PROMPTS]
    assert probe.n_samples == 3 and probe.n_tokens == sum(lengths)
    assert len(probe.per_sample_mean) == 3 and len(probe.top) == 4
    assert seen[-1] == 1.0
    kls = [pos.kl for pos in probe.top]
    assert kls == sorted(kls, reverse=True) and math.isclose(kls[0], probe.max)
    assert probe.median <= probe.mean * 2 and probe.max >= probe.mean > 0
    for pos in probe.top:
        assert pos.up[0].token_id == x and pos.top_ft == logit_pair.token_str(x)
        assert {s.token_id for s in pos.up[:2]} == {x, y}
        assert pos.down and all(s.p_ft < s.p_base and s.delta < 0 for s in pos.down)
        assert z not in {s.token_id for s in pos.up}
        assert pos.up[0].p_ft > pos.up[0].p_base
        assert 0 <= pos.position < lengths[pos.sample]
    first = probe.top[0]
    row = logit_pair.tokenizer(PROMPTS[first.sample])["input_ids"]
    assert first.token == logit_pair.token_str(row[first.position])
    assert first.context.endswith(first.token)


def test_probe_bad_arguments(logit_pair):
    with pytest.raises(ValueError, match="empty"):
        kl_probe(logit_pair, [])
    with pytest.raises(ValueError, match="over the context"):
        kl_probe(logit_pair, ["the cat sat on the mat " * 40])
    with pytest.raises(ValueError, match="k must be"):
        kl_probe(logit_pair, PROMPTS, k=-1)
    with pytest.raises(ValueError, match="vocabulary"):
        kl_probe(logit_pair, torch.full((2, 4), 10_000))
