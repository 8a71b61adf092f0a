"""Activation-gap profiling of every MLP neuron: streaming gap statistics (mean, RMS, tail quantile,
decorrelation, output-weighted) of a_ft - a_base over a corpus on identical tokens, in total and
intrinsic mode (the fine-tuned MLP on the base model's residual input), with bounded top-k exemplar
windows per neuron. Memory does not grow with corpus length; state can be checkpointed and resumed."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from diffscope import progress as pg
from diffscope.diffing.exemplars import Exemplar, mark
from diffscope.diffing.gapstats import (
    SUMS,
    LayerState,
    accumulate,
    finalise,
    fold_tail,
    kept,
)
from diffscope.models.families import blocks, get_module
from diffscope.models.hooks import (
    capture,
    forward_until_neurons,
    neuron_activations_from_mlp_input,
)
from diffscope.models.pair import ModelPair
from diffscope.models.placement import weight
from diffscope.paths import save_tensors

Mode = Literal["total", "intrinsic"]
Metric = Literal["rms", "mean", "tail", "decorrelation", "output"]
METRICS: tuple[str, ...] = ("rms", "mean", "tail", "decorrelation", "output")


class ProfileConfig(BaseModel):
    """How a neuron profile is computed; part of its cache key."""

    model_config = ConfigDict(extra="forbid")

    exemplars: int = Field(8, ge=1, le=64, description="top-k exemplar windows kept per neuron")
    context_left: int = Field(12, ge=0, le=64)
    context_right: int = Field(4, ge=0, le=32)
    tail_quantile: float = Field(0.999, gt=0.5, lt=1.0)
    intrinsic: bool = Field(False, description="also profile the intrinsic gap (costs ~1/3 more)")
    exemplar_mode: Mode | None = Field(None, description="gap used for exemplars (default total)")
    batch_size: int = Field(8, ge=1)
    skip_first: int = Field(1, ge=0, description="positions at the start of each window ignored")


@dataclass
class NeuronStat:
    """One neuron's gap statistics (normalised by pooled std) in one mode."""

    layer: int
    neuron: int
    mode: str
    rms: float
    mean: float
    tail: float
    decorrelation: float
    output: float
    base_mean: float
    finetuned_mean: float
    rank: int = 0
    score: float = 0.0


@dataclass
class NeuronProfile:
    """The finished profile: per-mode metric tensors [L, n] plus exemplar tensors [L, n, k(, S)]."""

    metrics: dict[str, dict[str, torch.Tensor]]
    means: dict[str, dict[str, torch.Tensor]]
    ex_gap: torch.Tensor
    ex_base: torch.Tensor
    ex_ft: torch.Tensor
    ex_tokens: torch.Tensor
    config: ProfileConfig
    n_tokens: int
    fingerprint: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        return int(self.ex_gap.shape[0])

    @property
    def n_neurons(self) -> int:
        return int(self.ex_gap.shape[1])

    @property
    def modes(self) -> list[str]:
        return list(self.metrics)

    def check(self, layer: int, neuron: int) -> None:
        """Raise a ValueError naming the valid ranges for a bad (layer, neuron)."""
        if not 0 <= layer < self.n_layers:
            raise ValueError(
                f"layer {layer} is out of range: valid layers are 0..{self.n_layers - 1}"
            )
        if not 0 <= neuron < self.n_neurons:
            raise ValueError(
                f"neuron {neuron} is out of range: valid neurons are 0..{self.n_neurons - 1}"
            )

    def stat(self, layer: int, neuron: int, mode: str = "total") -> NeuronStat:
        self.check(layer, neuron)
        m = self.metrics[mode]

        def value(metric: str) -> float:
            return float(m[metric][layer, neuron])

        return NeuronStat(
            layer=layer,
            neuron=neuron,
            mode=mode,
            rms=value("rms"),
            mean=value("mean"),
            tail=value("tail"),
            decorrelation=value("decorrelation"),
            output=value("output"),
            base_mean=float(self.means[mode]["base"][layer, neuron]),
            finetuned_mean=float(self.means[mode]["finetuned"][layer, neuron]),
        )

    def scores(self, metric: str = "rms", mode: str = "total") -> torch.Tensor:
        """[L, n] ranking scores; `mean` ranks by |mean| so both directions count."""
        if mode not in self.metrics:
            raise ValueError(f"mode {mode!r} is not in this profile; available: {self.modes}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
        values = self.metrics[mode][metric]
        return values.abs() if metric == "mean" else values

    def top(
        self,
        k: int = 20,
        metric: str = "rms",
        mode: str = "total",
        layers: Iterable[int] | None = None,
    ) -> list[NeuronStat]:
        """The k neurons with the largest gap score, optionally only in some layers."""
        scores = self.scores(metric, mode).clone()
        if layers is not None:
            keep = sorted(set(layers))
            for layer in keep:
                if not 0 <= layer < self.n_layers:
                    raise ValueError(f"layer {layer} is out of range: 0..{self.n_layers - 1}")
            mask = torch.ones(self.n_layers, dtype=torch.bool)
            mask[keep] = False
            scores[mask] = -math.inf
        flat = scores.flatten()
        k = max(0, min(k, int(torch.isfinite(flat).sum())))
        values, idx = flat.topk(k)
        out = []
        for rank, (value, i) in enumerate(zip(values.tolist(), idx.tolist(), strict=True), 1):
            s = self.stat(i // self.n_neurons, i % self.n_neurons, mode)
            s.rank, s.score = rank, value
            out.append(s)
        return out

    def ranks_of(
        self, neurons: Iterable[tuple[int, int]], metric: str = "rms", mode: str = "total"
    ) -> list[int]:
        """1-based rank of each given (layer, neuron) under a metric."""
        flat = self.scores(metric, mode).flatten()
        order = torch.empty_like(flat, dtype=torch.long)
        order[flat.argsort(descending=True)] = torch.arange(1, flat.numel() + 1)
        return [int(order[layer * self.n_neurons + n]) for layer, n in neurons]

    def exemplars(self, layer: int, neuron: int, tokenizer, k: int | None = None) -> list[Exemplar]:
        """The windows where this neuron's gap peaked, strongest first."""
        self.check(layer, neuron)
        out = []
        left = self.config.context_left
        for j in range(min(k or self.config.exemplars, self.ex_gap.shape[2])):
            gap = float(self.ex_gap[layer, neuron, j])
            if not math.isfinite(gap) or gap <= 0:
                break
            ids = self.ex_tokens[layer, neuron, j].tolist()
            before = [t for t in ids[:left] if t >= 0]
            after = [t for t in ids[left + 1 :] if t >= 0]
            token = tokenizer.decode([ids[left]])
            text = mark(tokenizer.decode(before), token, tokenizer.decode(after))
            out.append(
                Exemplar(
                    text,
                    token,
                    gap,
                    base_activation=float(self.ex_base[layer, neuron, j]),
                    finetuned_activation=float(self.ex_ft[layer, neuron, j]),
                )
            )
        return out

    # -- storage ------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        tensors = {
            "ex_gap": self.ex_gap,
            "ex_base": self.ex_base,
            "ex_ft": self.ex_ft,
            "ex_tokens": self.ex_tokens,
        }
        for mode, metrics in self.metrics.items():
            for name, value in metrics.items():
                tensors[f"{mode}.{name}"] = value
            for which, value in self.means[mode].items():
                tensors[f"{mode}.mean_{which}"] = value
        meta = {
            "config": self.config.model_dump_json(),
            "n_tokens": str(self.n_tokens),
            "fingerprint": self.fingerprint,
            "extra": json.dumps(self.extra),
        }
        return save_tensors(path, tensors, metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> NeuronProfile:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        metrics: dict[str, dict[str, torch.Tensor]] = {}
        means: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if "." not in key:
                continue
            mode, name = key.split(".", 1)
            if name.startswith("mean_"):
                means.setdefault(mode, {})[name.removeprefix("mean_")] = value
            else:
                metrics.setdefault(mode, {})[name] = value
        return cls(
            metrics,
            means,
            tensors["ex_gap"],
            tensors["ex_base"],
            tensors["ex_ft"],
            tensors["ex_tokens"],
            ProfileConfig.model_validate_json(meta["config"]),
            int(meta["n_tokens"]),
            meta.get("fingerprint", ""),
            json.loads(meta.get("extra", "{}")),
        )


class NeuronProfiler:
    """Accumulates gap statistics batch by batch; `finish(windows)` turns them into a NeuronProfile.

    Batches must come in corpus order: an exemplar is kept as the flat corpus position of its peak
    (window index x T + position), and `finish` cuts its token window out of the corpus.

    The running state lives on the pair's input device; each layer's activations are moved there
    from wherever a device map put that layer. `backend` reads activations through forward hooks
    ("hooks") or an nnsight trace ("nnsight", `diffscope.models.nnsight_backend`)."""

    def __init__(
        self, pair: ModelPair, config: ProfileConfig | None = None, backend: str = "hooks"
    ):
        if backend not in ("hooks", "nnsight"):
            raise ValueError(f"backend must be 'hooks' or 'nnsight', not {backend!r}")
        self.pair = pair
        self.backend = backend
        self.cfg = config or ProfileConfig()
        self.device = torch.device(pair.device)
        dev = self.device
        self.layers = list(range(pair.n_layers))
        L, n, k = pair.n_layers, pair.n_neurons, self.cfg.exemplars
        self.modes: list[str] = ["total", "intrinsic"] if self.cfg.intrinsic else ["total"]
        self.ex_mode = self.cfg.exemplar_mode or "total"
        if self.ex_mode not in self.modes:
            raise ValueError("exemplar_mode 'intrinsic' needs intrinsic=True")
        self.state = {m: LayerState.empty(L, n, dev) for m in self.modes}
        self.ex_gap = torch.full((L, n, k), -math.inf, device=dev)
        self.ex_base = torch.zeros(L, n, k, device=dev)
        self.ex_ft = torch.zeros(L, n, k, device=dev)
        self.ex_at = torch.full((L, n, k), -1, dtype=torch.int64, device=dev)  # corpus position
        self.batches_done = 0
        self.n_windows = 0
        self.n_tokens = 0
        self._filling = [True] * L  # whether a layer's exemplar heaps were still filling up

    # -- accumulation -------------------------------------------------------------------------
    @torch.no_grad()
    def add_batch(self, input_ids: torch.Tensor) -> None:
        """Run both models on a batch of equal-length token windows [B, T] and fold in the gaps.

        Each forward stops after the last layer's neurons (no logits are needed). The first
        `skip_first` positions of each window are zeroed in place (activations and gaps), so sums
        over whole tensors equal sums over the kept positions without copying them out; their
        |gap| is set to -inf so neither the tail histogram nor the exemplars see them."""
        pair, fam = self.pair, self.pair.family
        batch = pair.batch_from_ids(input_ids)
        inputs = batch.model_inputs()
        last = self.layers[-1]
        want_in = self.layers if self.cfg.intrinsic else []
        if self.backend == "nnsight":
            from diffscope.models.nnsight_backend import trace_activations

            base = trace_activations(pair.base, fam, inputs, neurons=self.layers, mlp_in=want_in)
            ft = trace_activations(pair.finetuned, fam, inputs, neurons=self.layers)
        else:
            with capture(pair.base, fam, neurons=self.layers, mlp_in=want_in) as base:
                forward_until_neurons(pair.base, fam, last, inputs)
            with capture(pair.finetuned, fam, neurons=self.layers) as ft:
                forward_until_neurons(pair.finetuned, fam, last, inputs)
        skip, dev = self.cfg.skip_first, self.device
        n_kept = int(input_ids.shape[0] * max(0, input_ids.shape[1] - skip))
        for layer in self.layers:
            a_b = kept(base.neurons.pop(layer).to(dev), skip)
            gaps = {"total": kept(ft.neurons.pop(layer).to(dev), skip)}
            if self.cfg.intrinsic:
                own = neuron_activations_from_mlp_input(
                    pair.finetuned, fam, layer, base.mlp_in.pop(layer)
                )
                gaps["intrinsic"] = kept(own.to(dev), skip)
            for mode, a_f in gaps.items():
                d = a_f - a_b
                accumulate(self.state[mode], layer, a_b, a_f, d, n_kept)
                absd = d.abs_()
                if skip:
                    absd[:, :skip] = -math.inf
                fold_tail(self.state[mode], layer, absd, skip, self.cfg.tail_quantile)
                if mode == self.ex_mode:
                    self._exemplars(layer, a_b, a_f, absd)
        self.batches_done += 1
        self.n_windows += int(input_ids.shape[0])
        self.n_tokens += n_kept

    def _snippets(self, windows: torch.Tensor) -> torch.Tensor:
        """Token ids [L, n, k, S] around each exemplar's peak (-1 outside its window or where a
        neuron has fewer exemplars)."""
        left, right = self.cfg.context_left, self.cfg.context_right
        T = windows.shape[1]
        padded = torch.nn.functional.pad(windows.to(torch.int32), (left, right), value=-1)
        around = padded.unfold(1, left + 1 + right, 1)  # [N, T, S]
        ex_at = self.ex_at.cpu()
        at = ex_at.clamp(min=0)
        tokens = around[at // T, at % T]
        return tokens.masked_fill_((ex_at < 0).unsqueeze(-1), -1)

    def _exemplars(self, layer: int, a_b, a_f, absd) -> None:
        """Merge each window's peak |gap| per neuron into the neuron's top-k windows."""
        k = self.ex_gap.shape[2]
        B, T, n = absd.shape
        pos = None
        if self._filling[layer]:  # most neurons will have a contender: peaks and places at once
            peak, pos = absd.max(dim=1)  # [B, n]: one candidate per window and neuron
        else:
            peak = absd.amax(dim=1)
        cols = (peak > self.ex_gap[layer, :, -1]).any(0).nonzero().view(-1)
        self._filling[layer] = 4 * cols.numel() > n
        if cols.numel() == 0:
            return
        # with few contenders, the peak positions of those neurons alone are looked up
        pos = pos[:, cols] if pos is not None else absd[:, :, cols].argmax(dim=1)
        val = peak[:, cols].T  # [c, B]
        rows = pos.T + torch.arange(B, device=absd.device).mul_(T)  # flat place of each candidate
        cand_b = a_b.view(B * T, n)[rows, cols.unsqueeze(1)]
        cand_f = a_f.view(B * T, n)[rows, cols.unsqueeze(1)]
        cand_at = rows + self.n_windows * T
        # a stable sort keeps equal gaps in corpus order (heap first, then windows in order), so
        # ties go to the earliest position: the heap is the top k of (gap desc, position asc),
        # the same whatever the batching or sharding (`diffscope.diffing.shard`)
        both = torch.cat([self.ex_gap[layer, cols], val], dim=1)
        keep_val, keep = both.sort(dim=1, descending=True, stable=True)
        keep_val, keep = keep_val[:, :k], keep[:, :k]
        self.ex_gap[layer, cols] = keep_val
        self.ex_base[layer, cols] = torch.cat([self.ex_base[layer, cols], cand_b], 1).gather(
            1, keep
        )
        self.ex_ft[layer, cols] = torch.cat([self.ex_ft[layer, cols], cand_f], 1).gather(1, keep)
        self.ex_at[layer, cols] = torch.cat([self.ex_at[layer, cols], cand_at], 1).gather(1, keep)

    # -- checkpoints --------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every running statistic by name (on the state's device): what a checkpoint saves and
        what shards merge (`diffscope.diffing.shard`)."""
        out = {
            "ex_gap": self.ex_gap,
            "ex_base": self.ex_base,
            "ex_ft": self.ex_ft,
            "ex_at": self.ex_at,
            "progress": torch.tensor(
                [self.batches_done, self.n_tokens, self.n_windows], dtype=torch.int64
            ),
        }
        for mode, st in self.state.items():
            out.update({f"{mode}.{k}": v for k, v in st.sums.items()})
            out[f"{mode}.hist"] = st.hist
            out[f"{mode}.floor"] = st.floor
        return out

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        tensors = {k: v.to(self.device) for k, v in tensors.items()}
        self.ex_gap, self.ex_base = tensors["ex_gap"], tensors["ex_base"]
        self.ex_ft, self.ex_at = tensors["ex_ft"], tensors["ex_at"]
        self.batches_done, self.n_tokens, self.n_windows = (
            int(x) for x in tensors["progress"].tolist()
        )
        for mode, st in self.state.items():
            st.sums = {k: tensors[f"{mode}.{k}"] for k in SUMS}
            st.hist = tensors[f"{mode}.hist"]
            st.floor = tensors[f"{mode}.floor"]

    # -- result -------------------------------------------------------------------------------
    @torch.no_grad()
    def finish(self, windows: torch.Tensor) -> NeuronProfile:
        """The profile; `windows` is the corpus [N, T] the batches came from, in order."""
        if self.n_tokens == 0:
            raise ValueError("no tokens were profiled: the corpus is empty")
        metrics, means = {}, {}
        w_out = torch.stack([self._out_norms(layer) for layer in self.layers]).double()
        for mode, st in self.state.items():
            here = LayerState(
                {k: v.cpu() for k, v in st.sums.items()}, st.hist.cpu(), st.floor.cpu()
            )
            metrics[mode], means[mode] = finalise(here, self.cfg.tail_quantile, w_out)
        return NeuronProfile(
            metrics,
            means,
            self.ex_gap.cpu().clone(),
            self.ex_base.cpu().clone(),
            self.ex_ft.cpu().clone(),
            self._snippets(windows),
            self.cfg,
            self.n_tokens,
            self.pair.fingerprint(),
        )

    def _out_norms(self, layer: int) -> torch.Tensor:
        """|output vector| of each fine-tuned neuron at `layer` (offloaded weights read back)."""
        fam, model = self.pair.family, self.pair.finetuned
        w = weight(model, get_module(blocks(model, fam)[layer], fam.out_proj)).detach()
        w = w if fam.out_weight_layout == "in_out" else w.T
        return w.float().norm(dim=1).cpu()


def profile_neurons(
    pair: ModelPair,
    windows: torch.Tensor,
    config: ProfileConfig | None = None,
    *,
    progress: pg.Show = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 25,
    backend: str = "hooks",
) -> NeuronProfile:
    """Profile every MLP neuron over token windows [N, T] (both models see identical tokens).

    With `checkpoint`, the running state is saved every `checkpoint_every` batches and a later call
    with the same arguments resumes from it (the file is removed once the profile is finished).
    """
    cfg = config or ProfileConfig()
    if windows.ndim != 2 or windows.shape[0] == 0:
        raise ValueError("the corpus is empty: need token windows of shape [N, T] with N > 0")
    if windows.shape[1] > pair.context_length:
        raise ValueError(
            f"windows of {windows.shape[1]} tokens exceed the context of "
            f"{pair.context_length}; use shorter windows"
        )
    if windows.shape[1] <= cfg.skip_first:
        raise ValueError(f"windows must be longer than skip_first={cfg.skip_first} tokens")
    prof = NeuronProfiler(pair, cfg, backend)
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.exists():
        from safetensors.torch import load_file

        try:
            prof.load_state(load_file(str(ckpt)))
        except (KeyError, ValueError):  # written by another version of the profiler: start over
            prof = NeuronProfiler(pair, cfg, backend)
    starts = list(range(0, windows.shape[0], cfg.batch_size))
    bar: pg.Progress[None]
    with pg.progress(
        len(starts), "neuron profile", show=progress, initial=min(prof.batches_done, len(starts))
    ) as bar:
        for i, start in enumerate(starts):
            if i < prof.batches_done:
                continue
            prof.add_batch(windows[start : start + cfg.batch_size])
            bar.advance(message=f"profiled {prof.n_tokens} tokens")
            if ckpt is not None and (i + 1) % checkpoint_every == 0 and i + 1 < len(starts):
                save_tensors(ckpt, prof.state_tensors())
    result = prof.finish(windows)
    if ckpt is not None and ckpt.exists():
        ckpt.unlink()
    return result
