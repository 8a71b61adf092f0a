"""Cached artifacts of one pair: the probe corpus as token windows, the neuron profile, logit-diff
mining and mean activation differences, each keyed by the pair's weights fingerprint plus the method
config, stored under `$DIFFSCOPE_HOME/artifacts/FINGERPRINT/` with atomic writes (safetensors/JSON)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from diffscope.diffing.neurons import NeuronProfile, ProfileConfig, profile_neurons
from diffscope.models.pair import ModelPair
from diffscope.paths import home, save_tensors, write_json

Progress = Callable[[float, str], None]


class CorpusSpec(BaseModel):
    """Which text the artifacts are computed on, and how it is cut into windows."""

    model_config = ConfigDict(extra="forbid")

    source: str = "world"
    n_docs: int = Field(1200, ge=1)
    seed: int = 7
    window: int = Field(64, ge=4)
    max_windows: int = Field(384, ge=1)


PROFILE_FORMAT = 2  # bump when a cached profile's content changes (2: one exemplar per window)
MINING_FORMAT = 2  # bump when cached diff mining changes (2: predicted-mass shift per token)


def config_key(*parts: BaseModel | dict | str) -> str:
    """A short stable hash of configs (the cache key beside the pair fingerprint)."""
    blob = json.dumps(
        [p.model_dump() if isinstance(p, BaseModel) else p for p in parts],
        sort_keys=True,
        default=str,
    )
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


class Artifacts:
    """Computes on first use, then serves from the cache, everything expensive about one pair."""

    def __init__(
        self,
        pair: ModelPair,
        corpus: CorpusSpec | None = None,
        progress: Progress | None = None,
        root: Path | None = None,
    ):
        self.pair = pair
        self.corpus = corpus or CorpusSpec()
        self.progress = progress
        self._root = root
        self._windows: torch.Tensor | None = None
        self._memo: dict[str, object] = {}

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = home() / "artifacts" / self.pair.fingerprint()
        self._root.mkdir(parents=True, exist_ok=True)
        return self._root

    def _say(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(fraction, message)

    def windows(self) -> torch.Tensor:
        """The probe corpus as token windows [N, window] (deterministic from the spec)."""
        if self._windows is None:
            from diffscope.corpus import resolve_corpus, token_windows

            spec = self.corpus
            window = min(spec.window, self.pair.context_length)
            texts = resolve_corpus(spec.source, n_docs=spec.n_docs, seed=spec.seed)
            self._windows = token_windows(
                self.pair.tokenizer, texts, window, max_windows=spec.max_windows
            )
        return self._windows

    def neuron_profile(self, config: ProfileConfig | None = None) -> NeuronProfile:
        """Every MLP neuron's gap statistics and exemplars (cached; resumable while computing)."""
        cfg = config or ProfileConfig(intrinsic=True)
        key = config_key(cfg, self.corpus, {"version": PROFILE_FORMAT})
        if key in self._memo:
            return self._memo[key]  # type: ignore[return-value]
        path = self.root / f"neurons-{key}.safetensors"
        if path.exists():
            profile = NeuronProfile.load(path)
        else:
            profile = profile_neurons(
                self.pair,
                self.windows(),
                cfg,
                progress=lambda f, m: self._say(f, f"neuron profile: {m}"),
                checkpoint=self.root / f"neurons-{key}.partial.safetensors",
            )
            profile.save(path)
        self._memo[key] = profile
        return profile

    def diff_mining(self, positions: int = 64, top_k: int = 100, n_topics: int = 3):
        """Tokens the fine-tune promotes and demotes, with NMF topics (cached as JSON)."""
        from diffscope.diffing.mining import PER_TOKEN, DiffMining, mine_logit_diffs

        settings = {"positions": positions, "top_k": top_k, "topics": n_topics}
        key = config_key({**settings, "version": MINING_FORMAT}, self.corpus)
        if key in self._memo:
            return self._memo[key]
        path = self.root / f"mining-{key}.json"
        tensors_path = self.root / f"mining-{key}.safetensors"
        if path.exists() and tensors_path.exists():
            from safetensors.torch import load_file

            result = DiffMining.model_validate(
                {**json.loads(path.read_text()), **load_file(str(tensors_path))}
            )
        else:
            result = mine_logit_diffs(
                self.pair,
                self.windows(),
                positions=positions,
                top_k=top_k,
                n_topics=n_topics,
                progress=lambda f, m: self._say(f, f"diff mining: {m}"),
            )
            save_tensors(tensors_path, {name: getattr(result, name) for name in PER_TOKEN})
            write_json(path, result.model_dump(mode="json"))
        self._memo[key] = result
        return result

    def mean_diff(self, layer: int, positions: int = 5) -> torch.Tensor:
        """Mean (h_ft - h_base) per early position at `layer`: [positions, d] (cached)."""
        from safetensors.torch import load_file

        from diffscope.diffing.lens import mean_diff

        layer = self.pair.check_layer(layer)
        key = config_key({"layer": layer, "positions": positions}, self.corpus)
        if key in self._memo:
            return self._memo[key]  # type: ignore[return-value]
        path = self.root / f"meandiff-{key}.safetensors"
        if path.exists():
            value = load_file(str(path))["mean_diff"]
        else:
            value = mean_diff(
                self.pair,
                self.windows(),
                layer,
                positions,
                progress=lambda f, m: self._say(f, f"mean difference: {m}"),
            )
            save_tensors(path, {"mean_diff": value})
        self._memo[key] = value
        return value

    def clusters(
        self, top: int = 48, n_clusters: int | None = None, metric: str = "rms", mode: str = "total"
    ):
        """Neuron clusters over a probe slice of the corpus (memoised in memory; cheap given the
        cached profile)."""
        from diffscope.diffing.clusters import cluster_neurons

        key = config_key({"top": top, "n": n_clusters, "metric": metric, "mode": mode}, self.corpus)
        if key not in self._memo:
            profile = self.neuron_profile()
            probe = self.windows()[:64]
            self._memo[key] = cluster_neurons(
                self.pair, profile, probe, top=top, n_clusters=n_clusters, metric=metric, mode=mode
            )
        return self._memo[key]

    def crosscoder(self, layer: int | None = None, loss: str = "batchtopk", **kw):
        """The pair's crosscoder at `layer` (default: middle), trained on first use and cached;
        `kw` go to `diffscope.diffing.crosscoder.pipeline.train_for_pair`."""
        from diffscope.diffing.crosscoder.pipeline import train_for_pair

        shown = kw.pop("progress", True) if self.progress is None else self.progress
        key = "crosscoder-" + config_key({"layer": layer, "loss": loss, **kw}, self.corpus)
        if key not in self._memo:
            self._memo[key] = train_for_pair(
                self.pair,
                layer=layer,
                loss=loss,
                corpus=self.corpus,
                root=self.root,
                progress=shown,
                **kw,
            )
        return self._memo[key]

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
