"""A trained crosscoder of one pair with its analysis (`CrosscoderArtifact`): decoder-norm
`classes`, latent scaling of the candidates on each side (ranked by relative decoder norm, not only
thresholded), metrics, `exemplars(latent, k)` as marked-up text and `direction(latent)` as a
steering `Direction` in the model's own activation scale; `load_artifact` reads a finished folder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import load_file

from diffscope.diffing.crosscoder.activations import ActivationSource, ShardedActivations
from diffscope.diffing.crosscoder.analysis import (
    CrosscoderMetrics,
    LatentClasses,
    LatentScaling,
    latent_classes,
    latent_scaling,
    top_activations,
)
from diffscope.diffing.crosscoder.collect import ROWS_FILE
from diffscope.diffing.crosscoder.model import Crosscoder, CrosscoderConfig
from diffscope.diffing.exemplars import Exemplar, mark
from diffscope.diffing.steering import Direction

Side = Literal["finetuned", "base"]

ANALYSIS_JSON = "analysis.json"
ANALYSIS_TENSORS = "analysis.safetensors"
NU_MAX = 0.5
"""Latent scaling: |nu| below this on both targets marks a genuine model-specific latent (the
other model holds the latent's direction neither with the same sign nor with the opposite one)."""
EXEMPLAR_K = 20


def _mirrored(model: Crosscoder) -> Crosscoder:
    """The same crosscoder with the two models swapped (base becomes index 1)."""
    twin = Crosscoder(model.d_model, model.dict_size, model.loss, model.k)
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

    def batch(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
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
            fve=tuple(analysis["fve"]),
            mse=tuple(analysis["mse"]),
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
        text = mark(f"{left}{lead}", tok.strip() or tok, right)
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
                    value=float(value),
                    word=word,
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
