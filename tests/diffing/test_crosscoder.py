"""Tests for the crosscoder: model, deterministic resumable training, shards and analysis."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffscope.diffing.crosscoder import (
    Crosscoder,
    CrosscoderConfig,
    ShardedActivations,
    TensorActivations,
    classify_decoder_norms,
    evaluate,
    latent_classes,
    latent_scaling,
    top_activations,
    train_crosscoder,
    write_activation_shards,
)
from diffscope.diffing.crosscoder.train import aux_loss, l1_factor, lr_factor

D = 32
N_SHARED, N_FT, N_BASE = 16, 4, 4


def planted(n: int = 4096, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sparse paired data over orthonormal directions: shared, fine-tune-only and base-only."""
    g = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(D, D, generator=g))[0].T
    n_feat = N_SHARED + N_FT + N_BASE
    coef = (torch.rand(n, n_feat, generator=g) < 0.08) * (
        torch.rand(n, n_feat, generator=g) * 2 + 0.5
    )
    shared = coef[:, :N_SHARED] @ basis[:N_SHARED]
    ft_part = coef[:, N_SHARED : N_SHARED + N_FT] @ basis[N_SHARED : N_SHARED + N_FT]
    base_part = coef[:, N_SHARED + N_FT : n_feat] @ basis[N_SHARED + N_FT : n_feat]
    x = torch.stack([shared + base_part, shared + ft_part], dim=1)
    return 3.0 * x + 0.01 * torch.randn(n, 2, D, generator=g), basis


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matmuls run fastest (and least disturbed by a busy machine) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def planted_run(one_thread) -> tuple[Crosscoder, TensorActivations, torch.Tensor]:
    x, basis = planted()
    cfg = CrosscoderConfig(
        d_model=D,
        dict_size=64,
        loss="batchtopk",
        k=2,
        lr=3e-3,
        batch_size=256,
        steps=400,
        dead_after_tokens=8192,
        threshold_beta=0.99,
        seed=0,
    )
    acts = TensorActivations(x)
    return train_crosscoder(acts, cfg, progress=False), acts, basis


def best_latent(model: Crosscoder, direction: torch.Tensor, half: int) -> int:
    """The live latent whose decoder for model `half` best matches `direction`."""
    live = evaluate(model, TensorActivations(planted(1024)[0])).fired > 0
    dec = model.W_dec.detach()[:, half]
    cos = torch.nn.functional.cosine_similarity(dec, direction[None], dim=-1)
    return int(torch.where(live, cos, -2.0).argmax())


def test_planted_ft_only_latents_are_found(planted_run) -> None:
    model, acts, basis = planted_run
    classes = latent_classes(model)
    for i in range(N_SHARED, N_SHARED + N_FT):
        j = best_latent(model, basis[i], half=1)
        assert classes.label(j) == "ft_only"
        assert bool(classes.ft_only_r[j])
        scaling = latent_scaling(model, acts, [j], batch_size=1000)
        assert scaling.nu[:, 0].abs().max() < 0.1  # both reconstruction and error nu near 0
    top_ft = set(classes.ft_rank[:N_FT].tolist())
    assert top_ft == {best_latent(model, basis[i], 1) for i in range(N_SHARED, N_SHARED + N_FT)}
    for i in range(N_SHARED + N_FT, N_SHARED + N_FT + N_BASE):
        assert classes.label(best_latent(model, basis[i], half=0)) == "base_only"
    for i in range(N_SHARED):
        j = best_latent(model, basis[i], half=1)
        assert classes.label(j) == "shared"
        assert bool(classes.shared_r[j])
        assert classes.cosine[j] > 0.95
        nu = latent_scaling(model, acts, [j]).nu[:, 0]
        assert torch.allclose(nu, torch.ones(2, dtype=nu.dtype), atol=0.1)


def test_planted_fve_and_sparsity(planted_run) -> None:
    model, acts, _ = planted_run
    metrics = evaluate(model, acts, batch_size=1000)
    assert min(metrics.fve) > 0.8
    assert 0.5 < metrics.l0 < 6
    assert metrics.rows == len(acts)
    # threshold encoding is batch independent on the trained model
    x = model.normalize(acts.batch(range(64)))
    together = model.encode(x, use_threshold=True)
    alone = torch.cat([model.encode(x[i : i + 1], use_threshold=True) for i in range(64)])
    assert model.threshold > 0
    assert torch.equal(together > 0, alone > 0)
    assert torch.allclose(together, alone, atol=1e-5)


def test_fve_matches_direct_computation() -> None:
    torch.manual_seed(1)
    model = Crosscoder(8, 24, "l1").eval()
    raw = torch.randn(300, 2, 8)
    metrics = evaluate(model, TensorActivations(raw), batch_size=64, normalize=False)
    with torch.no_grad():
        xhat, f = model(raw)
    for m in range(2):
        want = (
            1
            - (raw[:, m] - xhat[:, m]).var(0, unbiased=False).sum()
            / raw[:, m].var(0, unbiased=False).sum()
        )
        assert metrics.fve[m] == pytest.approx(float(want), abs=1e-5)
    assert metrics.l0 == pytest.approx(float((f > 0).sum(1).float().mean()), rel=1e-6)
    assert metrics.dead_fraction == pytest.approx(float(((f > 0).sum(0) == 0).float().mean()))


def test_latent_scaling_matches_lstsq() -> None:
    g = torch.Generator().manual_seed(3)
    model = Crosscoder(6, 12, "l1", generator=g).eval()
    with torch.no_grad():
        model.b_enc.add_(0.05)
        model.W_dec.mul_(torch.rand(12, 2, 1, generator=g) * 3)
        model.b_dec.normal_(generator=g)
    raw = torch.randn(150, 2, 6, generator=g)
    latents = [0, 3, 5, 11]
    result = latent_scaling(model, TensorActivations(raw), latents, batch_size=40, normalize=False)
    with torch.no_grad():
        xhat, f = model(raw)
    x, xhat, f = raw.double(), xhat.double(), f.double()
    dec = model.W_dec.detach().double()
    for col, j in enumerate(latents):
        assert f[:, j].abs().sum() > 0
        design = (f[:, j, None] * dec[j, 1][None]).reshape(-1, 1)
        for m in range(2):
            own = f[:, j, None] * dec[j, m][None]
            targets = (xhat[:, m], x[:, m] - (xhat[:, m] - own))
            for t, y in enumerate(targets):
                want = torch.linalg.lstsq(design, y.reshape(-1, 1)).solution.item()
                assert result.beta[t, m, col].item() == pytest.approx(want, rel=1e-6, abs=1e-9)
        assert torch.allclose(result.nu[:, col], result.beta[:, 0, col] / result.beta[:, 1, col])


def test_batchtopk_keeps_k_times_batch() -> None:
    torch.manual_seed(0)
    model = Crosscoder(16, 128, "batchtopk", k=3).train()
    with torch.no_grad():
        model.b_enc.fill_(0.1)
    x = torch.randn(32, 2, 16)
    f = model.encode(x)
    assert int((f > 0).sum()) == 3 * 32
    assert (f > 0).sum(1).float().std() > 0  # per-row counts vary: top-k over the whole batch
    code = model.batch_code(x)
    assert torch.equal(code.f, f)
    assert torch.equal(code.fired, (f > 0).any(0))
    scores = f * model.decoder_norms().sum(0)
    assert code.min_score.item() == pytest.approx(scores[f > 0].min().item())
    assert (scores[f == 0] <= code.min_score).all()  # nothing dropped beats anything kept
    model.update_threshold(code.min_score, beta=0.9)
    assert model.threshold.item() == pytest.approx(code.min_score.item())
    model.update_threshold(torch.tensor(0.0), beta=0.9)
    assert model.threshold.item() == pytest.approx(0.9 * code.min_score.item())
    model.eval()
    batch = model.encode(x)
    rows = torch.cat([model.encode(x[i : i + 1]) for i in range(32)])
    flipped = model.encode(x.flip(0)).flip(0)
    for other in (rows, flipped):  # same support; values equal up to matmul rounding
        assert torch.equal(batch > 0, other > 0)
        assert torch.allclose(batch, other, atol=1e-6)


def test_decoder_norm_classes_on_hand_made_decoders() -> None:
    norms = torch.tensor(
        [
            [1.0, 0.0, 1.0, 1.0, 0.02, 0.5, 0.3],  # base
            [0.0, 1.0, 1.0, 0.5, 1.0, 1.0, 0.3],  # ft
        ]
    )
    classes = classify_decoder_norms(norms)
    assert [classes.label(j) for j in range(7)] == [
        "base_only",
        "ft_only",
        "shared",
        "other",
        "ft_only",
        "other",
        "shared",
    ]
    assert classes.delta[3].item() == pytest.approx(0.75)
    assert classes.r[3].item() == pytest.approx(1 / 3)
    assert bool(classes.shared_r[3]) and not bool(classes.shared[3])
    assert classes.ft_rank[:3].tolist() == [1, 4, 5]
    assert classes.base_rank[:2].tolist() == [0, 3]
    assert classes.counts()["ft_only"] == 2

    model = Crosscoder(4, 3, "l1")
    with torch.no_grad():
        model.W_dec.zero_()
        model.W_dec[0, 0, 0] = 1.0  # base only
        model.W_dec[1, 1, 1] = 2.0  # ft only
        model.W_dec[2, 0, 2] = 1.0  # shared, same direction
        model.W_dec[2, 1, 2] = 1.0
    classes = latent_classes(model)
    assert [classes.label(j) for j in range(3)] == ["base_only", "ft_only", "shared"]
    assert classes.cosine[2].item() == pytest.approx(1.0)


def test_top_activations_match_sort() -> None:
    torch.manual_seed(2)
    model = Crosscoder(8, 16, "l1").eval()
    raw = torch.randn(333, 2, 8)
    top = top_activations(model, TensorActivations(raw), [1, 7], k=5, batch_size=50)
    f = model(raw)[1].detach()
    for col, j in enumerate([1, 7]):
        vals, idx = f[:, j].topk(5)
        assert torch.allclose(top.values[col], vals)
        assert top.indices[col][vals > 0].tolist() == idx[vals > 0].tolist()


def _small_cfg(loss: str) -> CrosscoderConfig:
    return CrosscoderConfig(
        d_model=8,
        dict_size=32,
        loss=loss,
        k=2,
        l1_coeff=0.1,
        lr=1e-2,
        batch_size=48,
        steps=30,
        dead_after_tokens=96,
        threshold_beta=0.9,
        seed=5,
    )


@pytest.mark.parametrize("loss", ["batchtopk", "l1"])
def test_interrupt_and_resume_is_bit_identical(tmp_path: Path, loss: str) -> None:
    x = torch.randn(100, 2, 8, generator=torch.Generator().manual_seed(9)) * 4 + 1
    acts = TensorActivations(x)
    cfg = _small_cfg(loss)
    whole = train_crosscoder(acts, cfg, progress=False)
    ckpt = tmp_path / "run"
    part = train_crosscoder(acts, cfg, checkpoint_dir=ckpt, checkpoint_every=4, stop_after_steps=13)
    assert (ckpt / "checkpoint.safetensors").exists()
    assert not (ckpt / "crosscoder.safetensors").exists()
    assert not torch.equal(part.W_enc, whole.W_enc)
    part2 = train_crosscoder(acts, cfg, checkpoint_dir=ckpt, stop_after_steps=9, progress=False)
    assert not torch.equal(part2.W_enc, whole.W_enc)
    resumed = train_crosscoder(acts, cfg, checkpoint_dir=ckpt, progress=False)
    for name, value in whole.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    if loss == "batchtopk":
        assert whole.threshold > 0
    loaded = Crosscoder.load(ckpt)
    for name, value in whole.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    assert Crosscoder.load_config(ckpt) == cfg
    with pytest.raises(ValueError, match="different crosscoder config"):
        train_crosscoder(acts, cfg.model_copy(update={"lr": 0.5}), checkpoint_dir=ckpt)


def test_scales_bring_mean_norm_to_sqrt_d() -> None:
    x = torch.randn(500, 2, 8) * torch.tensor([5.0, 0.2])[None, :, None]
    model = train_crosscoder(TensorActivations(x), _small_cfg("l1"), progress=False)
    norms = model.normalize(x).norm(dim=-1).mean(0)
    assert torch.allclose(norms, torch.full((2,), 8**0.5), rtol=0.02)


def _chunks(x: torch.Tensor, sizes: list[int]):
    start = 0
    for size in sizes:
        yield x[start : start + size]
        start += size


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_shards_round_trip_and_resume(tmp_path: Path, dtype: torch.dtype) -> None:
    x = torch.randn(237, 2, 6) * torch.tensor([1.0, 3.0])[None, :, None]
    sizes = [10, 70, 1, 56, 100]
    out = tmp_path / "acts"
    acts = write_activation_shards(_chunks(x, sizes), out, shard_tokens=50, dtype=dtype)
    assert len(acts) == 237 and acts.d_model == 6
    assert sorted(p.name for p in out.glob("shard_*.safetensors")) == [
        f"shard_{i:05d}.safetensors" for i in range(5)
    ]
    idx = torch.tensor([236, 0, 49, 50, 51, 120, 3, 3])
    assert torch.equal(acts.batch(idx), x[idx].to(dtype))
    assert acts.batch(idx).dtype == dtype
    stored = x.to(dtype).double()
    assert torch.allclose(acts.mean_norms(), stored.norm(dim=-1).mean(0))
    assert torch.allclose(acts.mean(), stored.mean(0))

    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("shard_*.safetensors")}
    (out / "shard_00003.safetensors").unlink()
    (out / "manifest.json").unlink()
    (out / "shard_00004.safetensors").write_bytes(b"truncated")
    again = write_activation_shards(_chunks(x, sizes), out, shard_tokens=50, dtype=dtype)
    for name in ("shard_00000.safetensors", "shard_00001.safetensors", "shard_00002.safetensors"):
        assert (out / name).stat().st_mtime_ns == stamps[name]
    assert torch.equal(again.batch(torch.arange(237)), x.to(dtype))
    assert again.manifest == acts.manifest
    reopened = ShardedActivations(out)
    assert torch.equal(reopened.batch([5, 200]), x[[5, 200]].to(dtype))
    with pytest.raises(IndexError):
        reopened.batch([237])


def test_training_on_shards_matches_in_memory(tmp_path: Path) -> None:
    x = (torch.randn(120, 2, 8) * 2).to(torch.bfloat16).float()
    sharded = write_activation_shards(
        _chunks(x, [120]), tmp_path, shard_tokens=32, dtype=torch.float32
    )
    cfg = _small_cfg("batchtopk").model_copy(update={"steps": 10})
    a = train_crosscoder(sharded, cfg, progress=False)
    b = train_crosscoder(TensorActivations(x), cfg, progress=False)
    assert torch.allclose(a.scale, b.scale, rtol=1e-5)
    assert torch.allclose(a.W_dec, b.W_dec, atol=1e-4)


def test_aux_loss_matches_dense_reference() -> None:
    torch.manual_seed(4)
    model = Crosscoder(6, 20, "batchtopk", k=2)
    relu = torch.relu(torch.randn(10, 20))
    residual = torch.randn(10, 2, 6)
    dead = torch.zeros(20, dtype=torch.bool)
    assert aux_loss(model, residual, relu, dead, aux_k=3).item() == 0.0
    dead[[1, 4, 5, 9, 13, 17]] = True
    got = aux_loss(model, residual, relu, dead, aux_k=3)
    scores = torch.where(dead, relu * model.decoder_norms().sum(0), -torch.inf)
    keep = torch.zeros_like(relu).scatter(1, scores.topk(3, dim=1).indices, 1.0)
    recon = model.decode(relu * keep) - model.b_dec
    want = (residual - recon).pow(2).sum((1, 2)).mean()
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    got.backward()
    assert model.W_dec.grad is not None and model.W_dec.grad[~dead].abs().sum() == 0


def test_schedules() -> None:
    cfg = CrosscoderConfig(d_model=4, dict_size=8, steps=100, warmup_frac=0.05, decay_frac=0.2)
    assert [l1_factor(s, cfg) for s in (0, 1, 5, 50)] == [0.0, 0.2, 1.0, 1.0]
    assert [lr_factor(s, cfg) for s in (0, 79, 80, 90, 99)] == pytest.approx(
        [1.0, 1.0, 1.0, 0.5, 0.05]
    )
