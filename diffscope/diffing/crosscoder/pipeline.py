"""Crosscoders for a model pair: cached training and analysis.

`train_for_pair` collects (or reuses) the pair's paired activations (`collect`) in the pair's
artifact cache (`$DIFFSCOPE_HOME/artifacts/FINGERPRINT/crosscoder/`, keyed by layer + corpus
config), trains a crosscoder with checkpoints (resumable), analyses it once (metrics, decoder-norm
classes, latent scaling of the most fine-tune- and base-specific latents, exemplar rows) and
caches everything atomically, sealing each finished folder with its checksums. A second call with
the same arguments loads the finished artifact (`artifact.CrosscoderArtifact`) without training;
a folder that fails its checksums is set aside (with a warning) and rebuilt.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from diffscope import progress as pg
from diffscope.diffing.cache import SEAL, ArtifactCache, pair_root
from diffscope.diffing.crosscoder.activations import MANIFEST, ShardedActivations
from diffscope.diffing.crosscoder.analysis import (
    evaluate,
    latent_classes,
    latent_scaling,
    top_activations,
)
from diffscope.diffing.crosscoder.artifact import (
    ANALYSIS_JSON,
    ANALYSIS_TENSORS,
    EXEMPLAR_K,
    NU_MAX,
    CrosscoderArtifact,
    Exemplar,
    Side,
    base_latent_scaling,
    load_artifact,
)
from diffscope.diffing.crosscoder.collect import ROWS_FILE, collect_activations, default_dtype
from diffscope.diffing.crosscoder.model import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Crosscoder,
    CrosscoderConfig,
)
from diffscope.diffing.crosscoder.train import CHECKPOINT_FILE, TRAINER_VERSION, train_crosscoder
from diffscope.diffing.probe import CorpusSpec, corpus_fingerprint, probe_windows
from diffscope.models.pair import ModelPair
from diffscope.paths import save_tensors, write_json

# what `capability` (and older callers) import from here; they live in `artifact`
__all__ = [
    "ANALYSIS_JSON",
    "NU_MAX",
    "CrosscoderArtifact",
    "Exemplar",
    "Side",
    "activations_for_pair",
    "artifact_root",
    "crosscoder_config",
    "load_artifact",
    "train_for_pair",
]

LOSSES: tuple[str, ...] = ("batchtopk", "l1")


def default_dict_size(d_model: int) -> int:
    """16 x d_model for tiny models (d_model <= 256), else 8 x."""
    return (16 if d_model <= 256 else 8) * d_model


def default_k(d_model: int) -> int:
    """BatchTopK k: 16 for tiny models (d_model <= 256), else 32."""
    return 16 if d_model <= 256 else 32


DEFAULT_STEPS = 4000


def crosscoder_config(
    d_model: int,
    rows: int,
    *,
    loss: str = "batchtopk",
    dict_size: int | None = None,
    k: int | None = None,
    steps: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    l1_coeff: float | None = None,
    seed: int = 0,
) -> CrosscoderConfig:
    """The config `train_for_pair` uses, defaults filled for the pair's size and data."""
    if loss not in LOSSES:
        raise ValueError(f"unknown crosscoder loss {loss!r}; use 'batchtopk' or 'l1'")
    for name, value in (("dict_size", dict_size), ("k", k), ("steps", steps)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    dict_size = dict_size or default_dict_size(d_model)
    k = k or default_k(d_model)
    if k > dict_size:
        raise ValueError(f"k ({k}) cannot exceed the dictionary size ({dict_size})")
    batch = batch_size or min(1024, max(64, rows // 8))
    return CrosscoderConfig(
        d_model=d_model,
        dict_size=dict_size,
        loss=loss,
        k=k,
        l1_coeff=1.5 if l1_coeff is None else l1_coeff,
        lr=lr or 1e-3,
        batch_size=batch,
        steps=steps or DEFAULT_STEPS,
        dead_after_tokens=min(10_000_000, max(rows, 50 * batch)),
        seed=seed,
    )


def _analyse(
    model: Crosscoder, acts: ShardedActivations, n_candidates: int
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Metrics, latent scaling of the candidates on both sides and their exemplar rows."""
    metrics = evaluate(model, acts)
    classes = latent_classes(model)
    n = min(n_candidates, model.dict_size)
    fired = metrics.fired > 0
    ft = [j for j in classes.ft_rank.tolist() if fired[j]][:n]
    base = [j for j in classes.base_rank.tolist() if fired[j]][:n]
    ft_lat = torch.tensor(ft, dtype=torch.long)
    base_lat = torch.tensor(base, dtype=torch.long)
    ft_sc = latent_scaling(model, acts, ft_lat)
    base_sc = base_latent_scaling(model, acts, base_lat)
    both = torch.tensor(list(dict.fromkeys(ft + base)), dtype=torch.long)
    top = top_activations(model, acts, both, k=EXEMPLAR_K)
    info = {
        "fve": list(metrics.fve),
        "mse": list(metrics.mse),
        "l0": metrics.l0,
        "dead_fraction": metrics.dead_fraction,
        "rows": metrics.rows,
        "n_candidates": n,
    }
    tensors = {
        "fired": metrics.fired,
        "ft.latents": ft_sc.latents,
        "ft.beta": ft_sc.beta,
        "ft.nu": ft_sc.nu,
        "ft.mass": ft_sc.activation_mass,
        "base.latents": base_sc.latents,
        "base.beta": base_sc.beta,
        "base.nu": base_sc.nu,
        "base.mass": base_sc.activation_mass,
        "top.latents": top.latents,
        "top.values": top.values,
        "top.indices": top.indices,
    }
    return info, tensors


def artifact_root(pair: ModelPair, root: Path | None = None) -> Path:
    """The pair's crosscoder folder: ROOT/crosscoder (ROOT defaults to the pair's artifacts)."""
    return (root if root is not None else pair_root(pair.fingerprint())) / "crosscoder"


def activations_for_pair(
    pair: ModelPair,
    *,
    layer: int | None = None,
    corpus: CorpusSpec | None = None,
    progress: pg.Show = True,
    resume: bool = True,
    root: Path | None = None,
    shard_tokens: int = 65_536,
    cache: ArtifactCache | None = None,
    windows: Callable[[], torch.Tensor] | None = None,
) -> ShardedActivations:
    """The pair's paired activations at `layer` (default: the middle layer) over the corpus
    windows, collected on first use and cached under the pair's artifact folder (`cache`, or
    one at `root`). `windows` gives the probe windows when the caller already has them."""
    corpus = corpus or CorpusSpec()
    cache = cache or ArtifactCache(pair.fingerprint(), root)
    layer = pair.check_layer(pair.n_layers // 2 if layer is None else layer)
    dtype = default_dtype(pair.d_model)
    out = cache.folder(
        "acts",
        {"layer": layer, "drop_first": 1, "dtype": str(dtype), "shard_tokens": shard_tokens},
        corpus,
        corpus_fingerprint(corpus),
        name=f"acts-L{layer}",
    )
    if not resume and not (out / MANIFEST).exists() and out.exists():
        shutil.rmtree(out)
    if (out / MANIFEST).exists() and (out / ROWS_FILE).exists():
        problem = cache.check_folder("acts", out)
        if problem is not None:
            cache.reject("acts", [out], problem, "collecting the activations again")
    rows = windows() if windows is not None else probe_windows(pair, corpus)
    acts = collect_activations(
        pair, rows, layer, out, shard_tokens=shard_tokens, dtype=dtype, progress=progress
    )
    if not (out / SEAL).exists():
        cache.seal("acts", out)
    return acts


def train_for_pair(
    pair: ModelPair,
    *,
    layer: int | None = None,
    loss: str = "batchtopk",
    dict_size: int | None = None,
    k: int | None = None,
    steps: int | None = None,
    corpus: CorpusSpec | None = None,
    progress: pg.Show = True,
    resume: bool = True,
    root: Path | None = None,
    cache: ArtifactCache | None = None,
    windows: Callable[[], torch.Tensor] | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    l1_coeff: float | None = None,
    n_candidates: int = 64,
    seed: int = 0,
) -> CrosscoderArtifact:
    """Train (or load from the cache) a crosscoder on the pair's activations at `layer`.

    Defaults: the middle layer, dictionary 16 x d_model for tiny models (8 x otherwise), BatchTopK
    k = 16 for tiny models (32 otherwise), L1 coefficient 1.5 (L0 ~30 on the micro zoo), 4000
    steps. Training checkpoints into the artifact folder; an interrupted run resumes
    (`resume=False` discards a partial checkpoint and partial activations; a finished crosscoder
    is always loaded from the cache). Bad arguments raise ValueError. `progress`: True for
    progress bars, False for silence, or a callback (fraction, message). `cache`: the pair's
    artifact cache (default: one at `root`, else under `$DIFFSCOPE_HOME`).
    """
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
    if loss not in LOSSES:
        raise ValueError(f"unknown crosscoder loss {loss!r}; use 'batchtopk' or 'l1'")
    if layer is not None:
        pair.check_layer(layer)
    corpus = corpus or CorpusSpec()
    cache = cache or ArtifactCache(pair.fingerprint(), root)
    layer = pair.check_layer(pair.n_layers // 2 if layer is None else layer)
    report = progress if callable(progress) else None
    bars = progress is True

    def collect_progress(fraction: float, message: str) -> None:
        if report is not None:
            report(0.3 * fraction, message)

    acts = activations_for_pair(
        pair,
        layer=layer,
        corpus=corpus,
        progress=collect_progress if report is not None else bars,
        resume=resume,
        cache=cache,
        windows=windows,
    )
    cfg = crosscoder_config(
        pair.d_model,
        len(acts),
        loss=loss,
        dict_size=dict_size,
        k=k,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        l1_coeff=l1_coeff,
        seed=seed,
    )
    folder = cache.folder(
        "crosscoder",
        cfg,
        {"acts": acts.directory.name, "candidates": n_candidates, "trainer": TRAINER_VERSION},
        name=f"{loss}-L{layer}",
    )
    if (folder / ANALYSIS_JSON).exists():
        problem = cache.check_folder("crosscoder", folder)
        if problem is None:
            try:
                return load_artifact(folder, acts, pair.tokenizer)
            except Exception as exc:  # passes its checksums but cannot be read back
                problem = f"it cannot be read: {type(exc).__name__}: {exc}"
        cache.reject("crosscoder", [folder], problem, "training it again")
    if not resume and (folder / CHECKPOINT_FILE).exists():
        (folder / CHECKPOINT_FILE).unlink()
    folder.mkdir(parents=True, exist_ok=True)
    device = str(pair.device) if str(pair.device).startswith("cuda") else "cpu"
    if (folder / WEIGHTS_FILE).exists() and (folder / CONFIG_FILE).exists():
        model = Crosscoder.load(folder, device=device)
    elif report is None:
        model = train_crosscoder(
            acts,
            cfg,
            checkpoint_dir=folder,
            progress=bars,
            device=device,
            checkpoint_every=max(100, cfg.steps // 10),
        )
    else:
        chunk = max(1, math.ceil(cfg.steps / 20))
        done = 0
        while True:
            model = train_crosscoder(
                acts,
                cfg,
                checkpoint_dir=folder,
                progress=False,
                device=device,
                checkpoint_every=chunk,
                stop_after_steps=chunk,
            )
            done = int(load_file(str(folder / CHECKPOINT_FILE))["step"])
            report(0.3 + 0.6 * done / cfg.steps, f"crosscoder training step {done}/{cfg.steps}")
            if done >= cfg.steps:
                break
    if report is not None:
        report(0.9, "crosscoder analysis")
    info, tensors = _analyse(model.eval(), acts, n_candidates)
    info.update({"layer": layer, "steps": cfg.steps, "acts": acts.directory.name})
    save_tensors(folder / ANALYSIS_TENSORS, tensors)
    write_json(folder / ANALYSIS_JSON, info)
    cache.seal("crosscoder", folder)
    if report is not None:
        report(1.0, "crosscoder ready")
    return load_artifact(folder, acts, pair.tokenizer)
