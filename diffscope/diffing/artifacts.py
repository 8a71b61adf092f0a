"""Cached artifacts of one pair: the probe corpus as token windows, the neuron profile, logit-diff
mining, mean activation differences, neuron clusters and crosscoders, each computed on first use
and then served from the pair's content-addressed cache (`diffscope.diffing.cache`), which checks
each entry's checksums and finiteness on load and rebuilds a damaged one with a warning."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from diffscope import progress as pg
from diffscope.diffing.cache import ArtifactCache, non_finite
from diffscope.diffing.neurons import NeuronProfile, ProfileConfig, profile_neurons
from diffscope.diffing.probe import CorpusSpec, probe_windows
from diffscope.models.pair import ModelPair
from diffscope.paths import save_tensors

__all__ = ["Artifacts", "CorpusSpec"]


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    return tensors, meta


def _stats_problem(result: Any) -> str | None:
    """A non-finite number in the JSON part of a result (ranked token statistics, topics)."""
    stack: list[tuple[str, Any]] = [("", result.model_dump(mode="python"))]
    while stack:
        where, value = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return f"{where.lstrip('.')} is {value}"
        if isinstance(value, dict):
            stack.extend((f"{where}.{k}", v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
    return None


def _profile_problem(profile: NeuronProfile) -> str | None:
    """NaN/inf in a neuron profile (empty exemplar slots hold -inf gaps by design)."""
    named: dict[str, torch.Tensor] = {"ex_gap": profile.ex_gap}
    for mode, metrics in profile.metrics.items():
        named.update({f"{mode}.{name}": value for name, value in metrics.items()})
        named.update({f"{mode}.mean_{w}": value for w, value in profile.means[mode].items()})
    return non_finite(named, allow_neg_inf=("ex_gap",))


class Artifacts:
    """Computes on first use, then serves from the cache, everything expensive about one pair.

    `progress` is a `(fraction, message)` callback (or None) that first-use computation reports
    to; the CLI turns it into a bar, the server into MCP progress notifications. `on_warning`
    gets each damaged cache entry's warning line (the tools add it to the call's answer)."""

    def __init__(
        self,
        pair: ModelPair,
        corpus: CorpusSpec | None = None,
        progress: pg.ProgressFn | None = None,
        root: Path | None = None,
        backend: str = "hooks",
    ):
        self.pair = pair
        self.backend = backend
        """How activations are read: forward hooks or an nnsight trace (same results)."""
        self.sharding: Any = None
        """A `diffscope.diffing.shard.Sharding`: the neuron profile is computed by its workers."""
        self.corpus = corpus or CorpusSpec()
        self.progress = progress
        self._root = root
        self._cache: ArtifactCache | None = None
        self._windows: torch.Tensor | None = None
        self.on_warning: Callable[[str], None] | None = None
        """Called with each warning line of the cache (a damaged entry set aside and rebuilt)."""

    @property
    def cache(self) -> ArtifactCache:
        if self._cache is None:
            self._cache = ArtifactCache(self.pair.fingerprint(), self._root)
            self._cache.on_warning = self._relay
        return self._cache

    def _relay(self, message: str) -> None:
        if self.on_warning is not None:
            self.on_warning(message)

    @property
    def warnings(self) -> list[str]:
        """Every damaged cache entry found and rebuilt so far (one line each)."""
        return self.cache.warnings

    @property
    def root(self) -> Path:
        root = self.cache.root
        root.mkdir(parents=True, exist_ok=True)
        return root

    def _say(self, prefix: str) -> pg.ProgressFn:
        def say(fraction: float, message: str) -> None:
            if self.progress is not None:
                self.progress(fraction, f"{prefix}: {message}")

        return say

    def windows(self) -> torch.Tensor:
        """The probe corpus as token windows [N, window] (deterministic from the spec)."""
        if self._windows is None:
            show = self._say("probe corpus") if self.progress is not None else True
            self._windows = probe_windows(self.pair, self.corpus, progress=show)
        return self._windows

    def neuron_profile(self, config: ProfileConfig | None = None) -> NeuronProfile:
        """Every MLP neuron's gap statistics and exemplars (cached; resumable while computing)."""
        cfg = config or ProfileConfig(intrinsic=True)

        def compute(path: Path) -> NeuronProfile:
            if self.sharding is not None:
                from diffscope.diffing.shard import profile_sharded

                merged = profile_sharded(
                    self.sharding, self.windows(), cfg, state_dir=path.with_name("shards")
                )
                if merged is None:
                    raise ValueError("only rank 0 of a sharded job computes the merged profile")
                return merged
            return profile_neurons(
                self.pair,
                self.windows(),
                cfg,
                progress=self._say("neuron profile"),
                checkpoint=path.with_name(
                    path.name.replace(".safetensors", ".partial.safetensors")
                ),
                backend=self.backend,
            )

        return self.cache.get(
            "neurons",
            (cfg, self.corpus),
            compute,
            lambda p, v: v.save(p),
            NeuronProfile.load,
            _profile_problem,
        )

    def diff_mining(self, positions: int = 64, top_k: int = 100, n_topics: int = 3):
        """Tokens the fine-tune promotes and demotes, with NMF topics (cached)."""
        from diffscope.diffing.mining import PER_TOKEN, DiffMining, mine_logit_diffs

        settings = {"positions": positions, "top_k": top_k, "topics": n_topics}

        def compute(_path: Path) -> DiffMining:
            return mine_logit_diffs(
                self.pair,
                self.windows(),
                positions=positions,
                top_k=top_k,
                n_topics=n_topics,
                progress=self._say("diff mining"),
            )

        def save(path: Path, result: DiffMining) -> None:
            meta = {"json": json.dumps(result.model_dump(mode="json"))}
            save_tensors(path, {name: getattr(result, name) for name in PER_TOKEN}, metadata=meta)

        def load(path: Path) -> DiffMining:
            tensors, meta = _read(path)
            return DiffMining.model_validate({**json.loads(meta["json"]), **tensors})

        def check(result: DiffMining) -> str | None:
            named = {name: getattr(result, name) for name in PER_TOKEN}
            return non_finite(named) or _stats_problem(result)

        return self.cache.get("mining", (settings, self.corpus), compute, save, load, check)

    def mean_diff(self, layer: int, positions: int = 5) -> torch.Tensor:
        """Mean (h_ft - h_base) per early position at `layer`: [positions, d] (cached)."""
        from diffscope.diffing.lens import mean_diff

        layer = self.pair.check_layer(layer)

        def compute(_path: Path) -> torch.Tensor:
            return mean_diff(
                self.pair,
                self.windows(),
                layer,
                positions,
                progress=self._say("mean difference"),
                backend=self.backend,
            )

        return self.cache.get(
            "meandiff",
            ({"layer": layer, "positions": positions}, self.corpus),
            compute,
            lambda p, v: save_tensors(p, {"mean_diff": v}),
            lambda p: _read(p)[0]["mean_diff"],
            lambda v: non_finite({"mean_diff": v}),
        )

    def clusters(
        self, top: int = 48, n_clusters: int | None = None, metric: str = "rms", mode: str = "total"
    ):
        """Neuron clusters over a probe slice of the corpus (memoised in memory; cheap given the
        cached profile)."""
        from diffscope.diffing.clusters import cluster_neurons

        def compute() -> Any:
            return cluster_neurons(
                self.pair,
                self.neuron_profile(),
                self.windows()[:64],
                top=top,
                n_clusters=n_clusters,
                metric=metric,
                mode=mode,
            )

        settings = {"top": top, "n": n_clusters, "metric": metric, "mode": mode}
        return self.cache.memo("clusters", (settings, self.corpus), compute)

    def crosscoder(self, layer: int | None = None, loss: str = "batchtopk", **kw):
        """The pair's crosscoder at `layer` (default: middle), trained on first use and cached;
        `kw` go to `diffscope.diffing.crosscoder.pipeline.train_for_pair`."""
        from diffscope.diffing.crosscoder.pipeline import train_for_pair

        requested = kw.pop("progress", True)  # never part of the cache key
        shown = requested if self.progress is None else self.progress

        def compute() -> Any:
            return train_for_pair(
                self.pair,
                layer=layer,
                loss=loss,
                corpus=self.corpus,
                cache=self.cache,
                windows=self.windows,
                progress=shown,
                **kw,
            )

        settings = {"layer": layer, "loss": loss, **kw}
        return self.cache.memo("crosscoder", (settings, self.corpus), compute)

    def prepare(self) -> dict[str, str]:
        """Compute every default artifact ahead of serving; returns what was prepared."""
        done = {}
        self.neuron_profile()
        done["neuron_profile"] = "ok"
        self.diff_mining()
        done["diff_mining"] = "ok"
        self.mean_diff(self.pair.n_layers // 2)
        done["mean_diff"] = f"layer {self.pair.n_layers // 2}"
        return done
