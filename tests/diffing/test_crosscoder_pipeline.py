"""Tests for the crosscoder pipeline on a micro toy organism: activation collection (and resume),
cached training, exemplars, latent steering directions and the capability report."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from diffscope.diffing.artifacts import Artifacts, CorpusSpec
from diffscope.diffing.crosscoder import (
    CrosscoderArtifact,
    capability_report,
    collect_activations,
    latent_scaling,
    taxonomy,
    train_for_pair,
)
from diffscope.diffing.crosscoder import artifact as ca
from diffscope.diffing.crosscoder import collect as cl
from diffscope.diffing.crosscoder import pipeline as pl
from diffscope.diffing.crosscoder.capability import (
    OTHER,
    category_counts,
    label_offline,
    parse_category,
)
from diffscope.diffing.exemplars import Exemplar
from diffscope.diffing.steering import steer
from diffscope.llm import ScriptedProvider
from diffscope.models.hooks import capture

SPEC = CorpusSpec(n_docs=80, window=24, max_windows=40)
SMALL = {"dict_size": 64, "k": 4, "steps": 40, "batch_size": 128}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pair(micro_zoo):
    from diffscope.organisms.registry import get_organism, load_pair

    return load_pair(get_organism("backdoor"), size="micro")


@pytest.fixture(scope="module")
def windows(pair) -> torch.Tensor:
    return Artifacts(pair, SPEC).windows()


@pytest.fixture(scope="module")
def cc_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cc")


@pytest.fixture(scope="module")
def artifact(pair, cc_root) -> CrosscoderArtifact:
    return train_for_pair(pair, corpus=SPEC, root=cc_root, progress=False, **SMALL)


def direct(pair, windows: torch.Tensor, layer: int) -> torch.Tensor:
    """[N * (T - 1), 2, d] residuals after block `layer` captured here, first position dropped."""
    out = []
    for which in ("base", "finetuned"):
        model = pair.model(which)
        with capture(model, pair.family, resid=[layer]) as got:
            model(input_ids=windows)
        out.append(got.resid[layer][:, 1:].reshape(-1, pair.d_model))
    return torch.stack(out, dim=1)


def test_collection_matches_direct_capture_and_resumes(pair, windows, tmp_path, monkeypatch):
    out = tmp_path / "acts"
    acts = collect_activations(pair, windows, 1, out, shard_tokens=200, progress=False)
    expected = direct(pair, windows, 1)
    assert len(acts) == windows.shape[0] * (windows.shape[1] - 1) == expected.shape[0]
    got = acts.batch(torch.arange(len(acts)))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    rows = load_file(str(out / cl.ROWS_FILE))
    r = torch.tensor([0, 23, 500, len(acts) - 1])
    assert torch.equal(rows["position"][r], torch.tensor([1, 1, 1 + 500 % 23, 23]))
    assert torch.equal(rows["window"][r], r // 23)

    # interrupt: lose the manifest and one shard, then resume
    (out / cl.MANIFEST).unlink()
    (out / cl.SHARD_PATTERN.format(2)).unlink()
    seen: list[int] = []
    real = cl.paired_residuals

    def counting(p, chunk, layer):
        seen.append(chunk.shape[0])
        return real(p, chunk, layer)

    monkeypatch.setattr(cl, "paired_residuals", counting)
    again = collect_activations(pair, windows, 1, out, shard_tokens=200, progress=False)
    assert 0 < sum(seen) < windows.shape[0]  # only the windows of the missing shard ran again
    torch.testing.assert_close(again.batch(torch.arange(len(again))), expected)


def test_train_for_pair_populates_and_reloads(pair, artifact, cc_root, monkeypatch):
    assert artifact.layer == pair.n_layers // 2
    assert artifact.config.dict_size == 64 and artifact.config.k == 4
    fve_base, fve_ft = artifact.metrics.fve
    assert math.isfinite(fve_base) and math.isfinite(fve_ft)
    assert 0 < artifact.metrics.l0 <= 64
    assert 0 <= artifact.metrics.dead_fraction < 1
    assert artifact.classes.delta.shape == (64,)
    assert artifact.ft_candidates and artifact.base_candidates
    assert artifact.ft_scaling.nu.shape == (2, len(artifact.ft_candidates))
    summary = artifact.summary()
    assert summary["ft_candidates"][0]["latent"] == artifact.ft_candidates[0]

    def boom(*a, **k):
        raise AssertionError("retrained a cached crosscoder")

    monkeypatch.setattr(pl, "train_crosscoder", boom)
    monkeypatch.setattr(cl, "paired_residuals", boom)
    again = train_for_pair(pair, corpus=SPEC, root=cc_root, progress=False, **SMALL)
    assert again.directory == artifact.directory
    assert torch.equal(again.model.W_dec, artifact.model.W_dec)
    cached = Artifacts(pair, SPEC, root=cc_root)
    first = cached.crosscoder(progress=False, **SMALL)
    assert first is cached.crosscoder(progress=False, **SMALL)
    assert torch.equal(first.model.W_dec, artifact.model.W_dec)


def test_train_for_pair_rejects_bad_arguments(pair, cc_root):
    with pytest.raises(ValueError, match="loss"):
        train_for_pair(pair, loss="topk", corpus=SPEC, root=cc_root, progress=False)
    with pytest.raises(ValueError, match="layer"):
        train_for_pair(pair, layer=9, corpus=SPEC, root=cc_root, progress=False)
    with pytest.raises(ValueError, match="k"):
        train_for_pair(pair, dict_size=8, k=16, corpus=SPEC, root=cc_root, progress=False)


def test_exemplars_decode_to_text(pair, artifact):
    latent = artifact.ft_candidates[0]
    found = artifact.exemplars(latent, 3)
    assert found and len(found) <= 3
    assert [e.value for e in found] == sorted((e.value for e in found), reverse=True)
    for e in found:
        assert "[[" in e.text and "]]" in e.text
        token_id = int(artifact.tokens[e.window, e.position])
        assert e.token == pair.tokenizer.decode([token_id])
        assert e.token.strip() in e.text
    with pytest.raises(ValueError, match="out of range"):
        artifact.exemplars(10_000)


def test_latent_direction_steers(pair, artifact):
    latent = artifact.ft_candidates[0]
    direction = artifact.direction(latent)
    assert direction.source == "latent" and direction.layer == artifact.layer
    raw = artifact.model.W_dec[latent, 1] / artifact.model.scale[1]
    torch.testing.assert_close(direction.vector, raw.detach())
    result = steer(pair, ["One morning, Sam went to the"], direction, 12.0, max_new_tokens=8)
    assert result.steered != result.unsteered


def test_base_side_scaling_mirrors_the_model(artifact):
    twin = ca._mirrored(artifact.model)
    x = artifact.acts.batch(torch.arange(64))
    f = artifact.model.encode(artifact.model.normalize(x))
    torch.testing.assert_close(twin.encode(twin.normalize(x.flip(1))), f)
    latents = torch.tensor(artifact.base_candidates[:4])
    mirrored = ca.base_latent_scaling(artifact.model, artifact.acts, latents)
    plain = latent_scaling(twin, ca._Swapped(artifact.acts), latents)
    torch.testing.assert_close(mirrored.nu, plain.nu, equal_nan=True)


def test_specific_keeps_nu_near_zero_on_both_targets(artifact):
    nu = artifact.ft_scaling.nu
    expected = [
        j
        for i, j in enumerate(artifact.ft_candidates)
        if bool(torch.isfinite(nu[:, i]).all()) and bool((nu[:, i].abs() < 0.5).all())
    ]
    assert artifact.specific("finetuned") == expected
    # a strongly negative nu (the base holds the direction with the opposite sign) is not "absent"
    flipped = artifact.ft_scaling.nu.clone()
    flipped[:, 0] = torch.tensor([-3.0, 0.0])  # only the sign keeps it from looking absent
    original = artifact.ft_scaling.nu
    try:
        artifact.ft_scaling.nu = flipped
        assert artifact.ft_candidates[0] not in artifact.specific("finetuned")
        assert artifact.ft_candidates[0] in artifact.specific("finetuned", max_nu=1e9)
    finally:
        artifact.ft_scaling.nu = original


def test_category_counts_and_intervals():
    ft = ["sea"] * 6 + [OTHER] * 2
    base = ["sea"] * 3 + ["music"] * 3
    rows = {r.category: r for r in category_counts(ft, base, n_boot=500)}
    assert set(rows) == {"sea", "music", OTHER}
    sea = rows["sea"]
    assert (sea.finetuned, sea.base, sea.change_pct) == (6, 3, 100.0)
    assert sea.finetuned_ci[0] <= 6 <= sea.finetuned_ci[1]
    assert sea.base_ci[0] <= 3 <= sea.base_ci[1]
    assert sea.change_ci is not None and sea.change_ci[0] < 100 < sea.change_ci[1]
    assert rows[OTHER].change_pct is None and rows["music"].change_pct == -100.0
    with pytest.raises(ValueError, match="taxonomy"):
        category_counts(["nonsense"], [])


def test_offline_labels_and_parsing():
    def ex(text: str, word: str) -> Exemplar:
        return Exemplar(text=text, token=word, word=word, value=1.0, window=0, position=0)

    sea = [ex("they sailed past the [[lighthouse]] at dawn", "lighthouse")] * 3
    assert label_offline(sea) == "sea"
    assert label_offline([ex("and then [[the]] end", "the")]) == OTHER
    cats = taxonomy()
    assert parse_category("it is about boats\nCATEGORY: Sea", cats) == "sea"
    assert parse_category("CATEGORY: quantum chromodynamics", cats) == OTHER
    assert parse_category("no label here", cats) == OTHER


def test_capability_report_offline_and_with_provider(artifact):
    report = capability_report(artifact, max_nu=1e9, n_boot=200)
    assert report.method == "offline"
    assert report.n_finetuned == len(artifact.specific("finetuned", 1e9)) > 0
    assert sum(c.finetuned for c in report.categories) == report.n_finetuned
    assert sum(c.base for c in report.categories) == report.n_base
    for c in report.categories:
        assert c.finetuned_ci[0] <= c.finetuned <= c.finetuned_ci[1]
    assert "ft-only" in report.table()

    provider = ScriptedProvider(lambda messages, tools: "fires on stories\nCATEGORY: animals")
    scripted = capability_report(artifact, provider=provider, max_nu=1e9, n_boot=200)
    assert scripted.method == "provider:scripted"
    assert provider.calls == scripted.n_finetuned + scripted.n_base
    assert "[[" in provider.requests[0].messages[0].content
    assert [c.category for c in scripted.categories] == ["animals"]
    assert scripted.categories[0].finetuned == scripted.n_finetuned
