"""Crosscoders for a model pair: paired activation collection, cached training, and the artifact.

`collect_activations` runs both models of a pair over token windows and writes the residual stream
after block `layer` (first position of every window dropped: it carries the BOS-like outsized norm)
as resumable safetensors shards, plus `rows.safetensors` holding the windows and, for every row,
its (window, position) so any activation can be decoded back to text.

`train_for_pair` collects (or reuses) those activations under the pair's artifact folder
(`$DIFFSCOPE_HOME/artifacts/FINGERPRINT/crosscoder/`, keyed by layer + corpus config), trains a
crosscoder with checkpoints (resumable), analyses it once (metrics, decoder-norm classes, latent
scaling of the most fine-tune- and base-specific latents, exemplar rows) and caches everything
atomically. A second call with the same arguments loads the finished artifact without training.

`CrosscoderArtifact` bundles the result: model, config, layer, activation source, `classes`,
latent scaling of the candidates on each side (ranked by relative decoder norm, not only
thresholded), metrics, `exemplars(latent, k)` as marked-up text and `direction(latent)` as a
steering `Direction` in the model's own activation scale.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from diffscope.diffing.artifacts import CorpusSpec, config_key
from diffscope.diffing.crosscoder.activations import (
    MANIFEST,
    SHARD_PATTERN,
    ActivationSource,
    ShardedActivations,
    _shard_complete,
    write_activation_shards,
)
from diffscope.diffing.crosscoder.analysis import (
    CrosscoderMetrics,
    LatentClasses,
    LatentScaling,
    evaluate,
    latent_classes,
    latent_scaling,
    top_activations,
)
from diffscope.diffing.crosscoder.model import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    Crosscoder,
    CrosscoderConfig,
)
from diffscope.diffing.crosscoder.train import CHECKPOINT_FILE, TRAINER_VERSION, train_crosscoder
from diffscope.diffing.steering import Direction
from diffscope.models.hooks import capture
from diffscope.models.pair import ModelPair
from diffscope.paths import home, save_tensors, write_json

ProgressFn = Callable[[float, str], None]
Side = Literal["finetuned", "base"]

ROWS_FILE = "rows.safetensors"
ANALYSIS_JSON = "analysis.json"
ANALYSIS_TENSORS = "analysis.safetensors"
LOSSES: tuple[str, ...] = ("batchtopk", "l1")
NU_MAX = 0.5
"""Latent scaling: |nu| below this on both targets marks a genuine model-specific latent (the
other model holds the latent's direction neither with the same sign nor with the opposite one)."""
EXEMPLAR_K = 20
_MARK_OPEN, _MARK_CLOSE = "[[", "]]"


# ---------------------------------------------------------------------------------------------
# activations


def _shard_plan(total: int, shard_tokens: int) -> list[tuple[int, int]]:
    """(first row, row count) of every shard `write_activation_shards` will cut."""
    return [(s, min(shard_tokens, total - s)) for s in range(0, total, shard_tokens)]


def _done_rows(
    out: Path, total: int, shard_tokens: int, d_model: int, dtype: torch.dtype
) -> torch.Tensor:
    """A bool mask [total] of rows that lie in shards already complete on disk."""
    done = torch.zeros(total, dtype=torch.bool)
    for i, (start, rows) in enumerate(_shard_plan(total, shard_tokens)):
        if _shard_complete(out / SHARD_PATTERN.format(i), rows, d_model, dtype):
            done[start : start + rows] = True
    return done


@torch.no_grad()
def paired_residuals(pair: ModelPair, windows: torch.Tensor, layer: int) -> torch.Tensor:
    """Residual after block `layer` of both models on equal-length windows [B, T], first position
    dropped: [B * (T - 1), 2, d] float32 (row order: window-major, then position 1..T-1)."""
    layer = pair.check_layer(layer)
    batch = pair.batch_from_ids(windows)
    got = []
    for which in ("base", "finetuned"):
        model = pair.model(which)
        with capture(model, pair.family, resid=[layer]) as cap:
            model(**batch.model_inputs())
        got.append(cap.resid[layer][:, 1:].float().cpu())
    stacked = torch.stack(got, dim=2)  # [B, T-1, 2, d]
    return stacked.reshape(-1, 2, stacked.shape[-1])


def default_dtype(d_model: int) -> torch.dtype:
    """Shard storage: float32 for small models (exact, cheap), bfloat16 from d_model 512 up."""
    return torch.float32 if d_model < 512 else torch.bfloat16


def collect_activations(
    pair: ModelPair,
    windows: torch.Tensor,
    layer: int,
    out_dir: str | Path,
    *,
    batch_size: int = 16,
    shard_tokens: int = 65_536,
    dtype: torch.dtype | None = None,
    progress: bool | ProgressFn = True,
) -> ShardedActivations:
    """Paired residual activations after block `layer` over `windows` [N, T], written as shards.

    Resumable: windows whose rows all lie in shards already complete on disk are not run through
    the models again. A finished folder (manifest present) is returned as is.
    """
    if windows.ndim != 2 or windows.shape[1] < 2:
        raise ValueError(f"windows must be [N, T] with T >= 2, got {tuple(windows.shape)}")
    layer = pair.check_layer(layer)
    out = Path(out_dir)
    if (out / MANIFEST).exists() and (out / ROWS_FILE).exists():
        return ShardedActivations(out)
    out.mkdir(parents=True, exist_ok=True)
    n, t = windows.shape
    per = t - 1
    total = n * per
    d_model = pair.d_model
    dtype = dtype or default_dtype(d_model)
    rows = torch.arange(total)
    save_tensors(
        out / ROWS_FILE,
        {
            "tokens": windows.long().cpu().contiguous(),
            "window": rows // per,
            "position": 1 + rows % per,
        },
        metadata={"layer": str(layer)},
    )
    done = _done_rows(out, total, shard_tokens, d_model, dtype)
    report = progress if callable(progress) else None
    bar = tqdm(total=n, disable=progress is not True, desc=f"activations L{layer}", unit="window")

    def stream() -> Iterator[torch.Tensor]:
        for start in range(0, n, batch_size):
            chunk = windows[start : start + batch_size]
            first, last = start * per, (start + chunk.shape[0]) * per
            if bool(done[first:last].all()):
                yield torch.zeros(last - first, 2, d_model)
            else:
                yield paired_residuals(pair, chunk, layer)
            bar.update(chunk.shape[0])
            if report is not None:
                report((start + chunk.shape[0]) / n, f"activations at layer {layer}")

    try:
        return write_activation_shards(stream(), out, shard_tokens=shard_tokens, dtype=dtype)
    finally:
        bar.close()


# ---------------------------------------------------------------------------------------------
# the artifact


@dataclass
class Exemplar:
    """One activating token: its context with the token marked [[tok]], and the activation."""

    text: str
    token: str
    word: str
    value: float
    window: int
    position: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "token": self.token,
            "word": self.word,
            "value": self.value,
            "window": self.window,
            "position": self.position,
        }


def _mirrored(model: Crosscoder) -> Crosscoder:
    """The same crosscoder with the two models swapped (base becomes index 1)."""
    twin = Crosscoder(model.d_model, model.dict_size, model.loss, model.k)  # type: ignore[arg-type]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["W_enc"] = state["W_enc"].flip(0)
    state["W_dec"] = state["W_dec"].flip(1)
    state["b_dec"] = state["b_dec"].flip(0)
    state["scale"] = state["scale"].flip(0)
    twin.load_state_dict(state)
    return twin.to(model.W_dec.device).eval()


class _Swapped:
    """An activation source with the two models swapped."""

    def __init__(self, acts: ActivationSource) -> None:
        self.acts = acts

    def __len__(self) -> int:
        return len(self.acts)

    def batch(self, indices: torch.Tensor) -> torch.Tensor:
        return self.acts.batch(indices).flip(1)


def base_latent_scaling(
    model: Crosscoder, acts: ActivationSource, latents: torch.Tensor
) -> LatentScaling:
    """Latent scaling mirrored for base-specific latents: the base decoder vector is fitted and
    nu = beta_ft / beta_base (near 0 on both targets: the fine-tune really lost the latent)."""
    return latent_scaling(_mirrored(model), _Swapped(acts), latents)


def _word_around(pieces: list[str], i: int) -> str:
    """The word (letters, digits, apostrophes) that token piece `i` belongs to, lowercased."""
    text = "".join(pieces)
    begin = sum(len(p) for p in pieces[:i])
    end = begin + len(pieces[i])
    inside = [c for c in range(begin, end) if text[c].isalnum()]
    if not inside:
        return pieces[i].strip().lower()
    lo, hi = inside[0], inside[-1] + 1
    while lo > 0 and (text[lo - 1].isalnum() or text[lo - 1] == "'"):
        lo -= 1
    while hi < len(text) and (text[hi].isalnum() or text[hi] == "'"):
        hi += 1
    return text[lo:hi].lower()


class CrosscoderArtifact:
    """A trained crosscoder of one pair with its analysis, activations and decoding."""

    def __init__(
        self,
        directory: Path,
        model: Crosscoder,
        config: CrosscoderConfig,
        layer: int,
        acts: ShardedActivations,
        tokenizer: Any,
        analysis: dict[str, Any],
        tensors: dict[str, torch.Tensor],
    ) -> None:
        self.directory = directory
        self.model = model
        self.config = config
        self.layer = layer
        self.acts = acts
        self.tokenizer = tokenizer
        self.classes: LatentClasses = latent_classes(model)
        self.metrics = CrosscoderMetrics(
            fve=tuple(analysis["fve"]),  # type: ignore[arg-type]
            mse=tuple(analysis["mse"]),  # type: ignore[arg-type]
            l0=float(analysis["l0"]),
            dead_fraction=float(analysis["dead_fraction"]),
            rows=int(analysis["rows"]),
            fired=tensors["fired"],
        )
        self.ft_scaling = LatentScaling(
            latents=tensors["ft.latents"],
            beta=tensors["ft.beta"],
            nu=tensors["ft.nu"],
            activation_mass=tensors["ft.mass"],
        )
        self.base_scaling = LatentScaling(
            latents=tensors["base.latents"],
            beta=tensors["base.beta"],
            nu=tensors["base.nu"],
            activation_mass=tensors["base.mass"],
        )
        self.trained_steps = int(analysis.get("steps", config.steps))
        rows = load_file(str(acts.directory / ROWS_FILE))
        self.tokens, self.row_window, self.row_position = (
            rows["tokens"],
            rows["window"],
            rows["position"],
        )
        self._top: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for i, j in enumerate(tensors["top.latents"].tolist()):
            self._top[j] = (tensors["top.values"][i], tensors["top.indices"][i])

    # -- facts ---------------------------------------------------------------------------------
    @property
    def loss(self) -> str:
        return self.config.loss

    @property
    def dict_size(self) -> int:
        return self.config.dict_size

    @property
    def ft_candidates(self) -> list[int]:
        """The most fine-tune-specific latents (ascending Delta), those latent scaling covers."""
        return self.ft_scaling.latents.tolist()

    @property
    def base_candidates(self) -> list[int]:
        """The most base-specific latents (descending Delta), those latent scaling covers."""
        return self.base_scaling.latents.tolist()

    def scaling(self, side: Side) -> LatentScaling:
        if side not in ("finetuned", "base"):
            raise ValueError(f"side must be 'finetuned' or 'base', not {side!r}")
        return self.ft_scaling if side == "finetuned" else self.base_scaling

    def nu(self, latent: int, side: Side | None = None) -> tuple[float, float] | None:
        """(nu reconstruction, nu error) of a candidate latent, or None if it is not one."""
        sides: tuple[Side, ...] = (side,) if side else ("finetuned", "base")
        for s in sides:
            sc = self.scaling(s)
            hit = (sc.latents == latent).nonzero()
            if hit.numel():
                i = int(hit[0, 0])
                return float(sc.nu[0, i]), float(sc.nu[1, i])
        return None

    def specific(self, side: Side = "finetuned", max_nu: float = NU_MAX) -> list[int]:
        """Candidates latent scaling confirms as specific to `side`: finite |nu| below `max_nu`
        on both the reconstruction and the error target (ranked as the candidates are)."""
        sc = self.scaling(side)
        ok = torch.isfinite(sc.nu).all(0) & (sc.nu.abs() < max_nu).all(0)
        return sc.latents[ok].tolist()

    def summary(self) -> dict[str, Any]:
        """JSON-friendly facts: config, metrics, class counts, the top candidates with nu."""

        def side(s: Side) -> list[dict[str, Any]]:
            sc = self.scaling(s)
            return [
                {
                    "latent": int(j),
                    "delta": float(self.classes.delta[j]),
                    "nu_reconstruction": float(sc.nu[0, i]),
                    "nu_error": float(sc.nu[1, i]),
                }
                for i, j in enumerate(sc.latents.tolist())
            ]

        return {
            "layer": self.layer,
            "loss": self.loss,
            "dict_size": self.dict_size,
            "k": self.config.k if self.loss == "batchtopk" else None,
            "steps": self.trained_steps,
            "fve_base": self.metrics.fve[0],
            "fve_finetuned": self.metrics.fve[1],
            "l0": self.metrics.l0,
            "dead_fraction": self.metrics.dead_fraction,
            "rows": self.metrics.rows,
            "classes": self.classes.counts(),
            "ft_candidates": side("finetuned"),
            "base_candidates": side("base"),
        }

    # -- exemplars and directions ------------------------------------------------------------
    def _check_latent(self, latent: int) -> int:
        if not 0 <= int(latent) < self.dict_size:
            raise ValueError(
                f"latent {latent} is out of range: this crosscoder has latents 0..{self.dict_size - 1}"
            )
        return int(latent)

    def top_rows(self, latent: int, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """(values [k'], row indices [k']) of the latent's strongest activations (k' <= k)."""
        latent = self._check_latent(latent)
        if latent not in self._top or self._top[latent][0].numel() < k:
            top = top_activations(self.model, self.acts, [latent], k=max(k, EXEMPLAR_K))
            self._top[latent] = (top.values[0], top.indices[0])
        values, indices = self._top[latent]
        keep = indices[:k] >= 0
        return values[:k][keep], indices[:k][keep]

    def decode_row(self, row: int, before: int = 12, after: int = 4) -> tuple[str, str, str]:
        """(context text with the row's token marked [[tok]], the token, the word around it)."""
        w, p = int(self.row_window[row]), int(self.row_position[row])
        ids = self.tokens[w].tolist()
        lo, hi = max(0, p - before), min(len(ids), p + after + 1)
        pieces = [self.tokenizer.decode([i]) for i in ids[lo:hi]]
        at = p - lo
        tok = pieces[at]
        lead = tok[: len(tok) - len(tok.lstrip())]
        left = self.tokenizer.decode(ids[lo:p])
        right = self.tokenizer.decode(ids[p + 1 : hi])
        text = f"{left}{lead}{_MARK_OPEN}{tok.strip() or tok}{_MARK_CLOSE}{right}"
        return text.replace("\n", " "), tok, _word_around(pieces, at)

    def exemplars(self, latent: int, k: int = 10) -> list[Exemplar]:
        """The latent's `k` strongest activations as token contexts (strongest first)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        values, rows = self.top_rows(latent, k)
        found = []
        for value, row in zip(values.tolist(), rows.tolist(), strict=True):
            text, tok, word = self.decode_row(row)
            found.append(
                Exemplar(
                    text=text,
                    token=tok,
                    word=word,
                    value=float(value),
                    window=int(self.row_window[row]),
                    position=int(self.row_position[row]),
                )
            )
        return found

    def decoder_vector(self, latent: int, which: Literal["base", "finetuned"]) -> torch.Tensor:
        """The latent's decoder vector for one model, in that model's raw activation scale."""
        latent = self._check_latent(latent)
        if which not in ("base", "finetuned"):
            raise ValueError(f"which must be 'base' or 'finetuned', not {which!r}")
        m = 0 if which == "base" else 1
        return (self.model.W_dec[latent, m] / self.model.scale[m]).detach().float().cpu().clone()

    def direction(
        self, latent: int, which: Literal["base", "finetuned"] = "finetuned"
    ) -> Direction:
        """A steering direction along the latent's decoder vector (un-normalised)."""
        vector = self.decoder_vector(latent, which)
        if float(vector.norm()) == 0:
            raise ValueError(f"latent {latent} has a zero {which} decoder vector")
        return Direction(
            vector=vector,
            layer=self.layer,
            source="latent",
            label=f"crosscoder {self.loss} latent {latent} ({which} decoder) at layer {self.layer}",
        )


# ---------------------------------------------------------------------------------------------
# training for a pair


def _corpus_fingerprint(corpus: CorpusSpec) -> str:
    """A hash of a file or folder corpus's contents ('' for the world corpus)."""
    source = corpus.source.strip()
    if source == "world" or source.startswith("world:"):
        return ""
    path = Path(source).expanduser()
    digest = hashlib.blake2b(digest_size=12)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        digest.update(str(f.relative_to(path) if f != path else f.name).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


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
        loss=loss,  # type: ignore[arg-type]
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
    base = root if root is not None else home() / "artifacts" / pair.fingerprint()
    return base / "crosscoder"


def activations_for_pair(
    pair: ModelPair,
    *,
    layer: int | None = None,
    corpus: CorpusSpec | None = None,
    progress: bool | ProgressFn = True,
    resume: bool = True,
    root: Path | None = None,
    shard_tokens: int = 65_536,
) -> ShardedActivations:
    """The pair's paired activations at `layer` (default: the middle layer) over the corpus
    windows, collected on first use and cached under the pair's artifact folder."""
    from diffscope.diffing.artifacts import Artifacts

    corpus = corpus or CorpusSpec()
    layer = pair.check_layer(pair.n_layers // 2 if layer is None else layer)
    dtype = default_dtype(pair.d_model)
    key = config_key(
        {"layer": layer, "drop_first": 1, "dtype": str(dtype), "shard_tokens": shard_tokens},
        corpus,
        _corpus_fingerprint(corpus),
    )
    out = artifact_root(pair, root) / f"acts-L{layer}-{key}"
    if not resume and not (out / MANIFEST).exists() and out.exists():
        shutil.rmtree(out)
    windows = Artifacts(pair, corpus, root=root).windows()
    return collect_activations(
        pair, windows, layer, out, shard_tokens=shard_tokens, dtype=dtype, progress=progress
    )


def train_for_pair(
    pair: ModelPair,
    *,
    layer: int | None = None,
    loss: str = "batchtopk",
    dict_size: int | None = None,
    k: int | None = None,
    steps: int | None = None,
    corpus: CorpusSpec | None = None,
    progress: bool | ProgressFn = True,
    resume: bool = True,
    root: Path | None = None,
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
    progress bars, False for silence, or a callback (fraction, message).
    """
    if n_candidates < 1:
        raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
    if loss not in LOSSES:
        raise ValueError(f"unknown crosscoder loss {loss!r}; use 'batchtopk' or 'l1'")
    if layer is not None:
        pair.check_layer(layer)
    corpus = corpus or CorpusSpec()
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
        root=root,
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
    key = config_key(
        cfg,
        {"acts": acts.directory.name, "candidates": n_candidates, "trainer": TRAINER_VERSION},
    )
    folder = artifact_root(pair, root) / f"{loss}-L{layer}-{key}"
    if (folder / ANALYSIS_JSON).exists():
        return load_artifact(folder, acts, pair.tokenizer)
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
    if report is not None:
        report(1.0, "crosscoder ready")
    return load_artifact(folder, acts, pair.tokenizer)


def load_artifact(folder: Path, acts: ShardedActivations, tokenizer: Any) -> CrosscoderArtifact:
    """Load a finished crosscoder artifact folder written by `train_for_pair`."""
    info = json.loads((folder / ANALYSIS_JSON).read_text(encoding="utf-8"))
    model = Crosscoder.load(folder)
    cfg = Crosscoder.load_config(folder)
    if cfg is None:
        raise ValueError(f"{folder} holds a crosscoder without its training config")
    tensors = load_file(str(folder / ANALYSIS_TENSORS))
    return CrosscoderArtifact(
        folder, model, cfg, int(info["layer"]), acts, tokenizer, info, tensors
    )
