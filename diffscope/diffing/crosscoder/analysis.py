"""Reading a trained crosscoder: latent classes, latent scaling, quality metrics, exemplars.

- `latent_classes`: relative decoder norm in both conventions, r = ||d_ft|| / (||d_base|| +
  ||d_ft||) and Delta = 0.5 * ((||d_base|| - ||d_ft||) / max(...) + 1), the classes each implies,
  the cosine of the two decoder vectors, and rankings (BatchTopK crosscoders can leave few latents
  past the thresholds, so rank rather than only threshold).
- `latent_scaling`: closed-form least squares of target y on f_j d_j (d_j the fine-tuned decoder
  vector), beta = sum_x f_j d_j.y / (||d_j||^2 sum_x f_j^2), for targets reconstruction xhat_m and
  error-plus-own-part x_m - (xhat_m - f_j d_j^m), per model; nu = beta_base / beta_ft. Vectorised
  over latents and streamed over batches (only sums are kept).
- `evaluate`: FVE per model, L0, dead fraction, mean squared error.
- `top_activations`: the k largest activations per latent and their row indices, kept as a running
  top-k merge whose memory is independent of the number of rows.

All functions take raw activations from an `ActivationSource` and apply the model's scales.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from diffscope.diffing.crosscoder.activations import ActivationSource
from diffscope.diffing.crosscoder.model import Crosscoder

BASE, FT = 0, 1
TARGETS = ("reconstruction", "error")


@dataclass
class LatentClasses:
    """Per-latent decoder-norm statistics and the classes they imply (all tensors [F])."""

    norm_base: torch.Tensor
    norm_ft: torch.Tensor
    r: torch.Tensor
    delta: torch.Tensor
    cosine: torch.Tensor
    ft_only: torch.Tensor
    base_only: torch.Tensor
    shared: torch.Tensor
    ft_only_r: torch.Tensor
    base_only_r: torch.Tensor
    shared_r: torch.Tensor
    ft_rank: torch.Tensor
    base_rank: torch.Tensor

    def label(self, j: int) -> str:
        """Delta-convention class of latent j: 'ft_only', 'base_only', 'shared' or 'other'."""
        for name in ("ft_only", "base_only", "shared"):
            if bool(getattr(self, name)[j]):
                return name
        return "other"

    def counts(self) -> dict[str, int]:
        """How many latents fall in each class, in both conventions."""
        names = ("ft_only", "base_only", "shared", "ft_only_r", "base_only_r", "shared_r")
        return {name: int(getattr(self, name).sum()) for name in names}


def classify_decoder_norms(
    norms: torch.Tensor,
    cosine: torch.Tensor | None = None,
    *,
    eps: float = 1e-12,
) -> LatentClasses:
    """Classes from decoder norms [2, F] (row 0 base, row 1 fine-tune).

    Delta convention: ft-only Delta < 0.1, base-only Delta > 0.9, shared |Delta - 0.5| < 0.1.
    r convention: ft-only r > 0.9, base-only r < 0.1, shared 0.3 < r < 0.7. `ft_rank` lists latents
    from most to least fine-tune specific (ascending Delta, ties broken by larger ||d_ft||);
    `base_rank` the mirror image.
    """
    nb, nf = norms[BASE].double(), norms[FT].double()
    r = nf / (nb + nf).clamp_min(eps)
    delta = 0.5 * ((nb - nf) / torch.maximum(nb, nf).clamp_min(eps) + 1)
    if cosine is None:
        cosine = torch.full_like(r, float("nan"))
    ft_key = delta - 1e-9 * nf / nf.max().clamp_min(eps)
    base_key = -delta - 1e-9 * nb / nb.max().clamp_min(eps)
    return LatentClasses(
        norm_base=nb,
        norm_ft=nf,
        r=r,
        delta=delta,
        cosine=cosine,
        ft_only=delta < 0.1,
        base_only=delta > 0.9,
        shared=(delta - 0.5).abs() < 0.1,
        ft_only_r=r > 0.9,
        base_only_r=r < 0.1,
        shared_r=(r > 0.3) & (r < 0.7),
        ft_rank=torch.argsort(ft_key, stable=True),
        base_rank=torch.argsort(base_key, stable=True),
    )


@torch.no_grad()
def latent_classes(model: Crosscoder) -> LatentClasses:
    """Decoder-norm classes and decoder cosine similarity of every latent of `model`."""
    dec = model.W_dec.detach().double()
    cosine = torch.nn.functional.cosine_similarity(dec[:, BASE], dec[:, FT], dim=-1)
    return classify_decoder_norms(model.decoder_norms().detach(), cosine)


def _batches(
    acts: ActivationSource, batch_size: int, max_rows: int | None
) -> Iterator[tuple[int, torch.Tensor]]:
    n = len(acts) if max_rows is None else min(len(acts), max_rows)
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(n, start + batch_size))
        yield start, acts.batch(idx)


def _encode(model: Crosscoder, raw: torch.Tensor, normalize: bool) -> tuple[torch.Tensor, ...]:
    x = raw.to(model.W_enc.device)
    x = model.normalize(x) if normalize else x.to(model.W_enc.dtype)
    f = model.encode(x)
    return x, f, model.decode(f)


@dataclass
class LatentScaling:
    """Latent-scaling fits for a set of latents.

    `beta` is [2 targets, 2 models, J] (targets in `TARGETS` order: reconstruction, error; models
    base, ft); `nu` is [2 targets, J] = beta_base / beta_ft. NaN where a latent never fired.
    """

    latents: torch.Tensor
    beta: torch.Tensor
    nu: torch.Tensor
    activation_mass: torch.Tensor

    @property
    def nu_reconstruction(self) -> torch.Tensor:
        return self.nu[0]

    @property
    def nu_error(self) -> torch.Tensor:
        return self.nu[1]


@torch.no_grad()
def latent_scaling(
    model: Crosscoder,
    acts: ActivationSource,
    latents: Sequence[int] | torch.Tensor | None = None,
    *,
    batch_size: int = 4096,
    max_rows: int | None = None,
    normalize: bool = True,
) -> LatentScaling:
    """Closed-form latent scaling of `latents` (all by default) over `acts`.

    For latent j with fine-tuned decoder vector d_j, per model m and target y:
    beta = sum_x f_j(x) d_j.y(x) / (||d_j||^2 sum_x f_j(x)^2), with y the reconstruction xhat_m or
    the error plus the latent's own part x_m - (xhat_m - f_j d_j^m).
    """
    if latents is None:
        latents = torch.arange(model.dict_size)
    lat = torch.as_tensor(latents, dtype=torch.long, device=model.W_dec.device)
    dec = model.W_dec.detach()[lat].double()  # [J, 2, d]
    d_ft = dec[:, FT]  # [J, d]
    own = (dec * d_ft[:, None]).sum(-1).T  # [2, J]: d_j . d_j^m
    num = torch.zeros(2, 2, lat.numel(), dtype=torch.float64, device=dec.device)
    f_sq = torch.zeros(lat.numel(), dtype=torch.float64, device=dec.device)
    for _, raw in _batches(acts, batch_size, max_rows):
        x, f, xhat = _encode(model, raw, normalize)
        fj = f[:, lat].double()  # [B, J]
        xhat = xhat.double()
        err = x.double() - xhat
        f2 = fj.pow(2).sum(0)
        f_sq += f2
        for m in (BASE, FT):
            num[0, m] += (fj * (xhat[:, m] @ d_ft.T)).sum(0)
            num[1, m] += (fj * (err[:, m] @ d_ft.T)).sum(0) + own[m] * f2
    denom = d_ft.pow(2).sum(-1) * f_sq
    beta = num / denom
    beta[:, :, f_sq == 0] = float("nan")
    nu = beta[:, BASE] / beta[:, FT]
    return LatentScaling(
        latents=lat.cpu(), beta=beta.cpu(), nu=nu.cpu(), activation_mass=f_sq.cpu()
    )


@dataclass
class CrosscoderMetrics:
    """Quality of a crosscoder over a set of rows."""

    fve: tuple[float, float]
    mse: tuple[float, float]
    l0: float
    dead_fraction: float
    rows: int
    fired: torch.Tensor


@torch.no_grad()
def evaluate(
    model: Crosscoder,
    acts: ActivationSource,
    *,
    batch_size: int = 4096,
    max_rows: int | None = None,
    normalize: bool = True,
) -> CrosscoderMetrics:
    """FVE per model (1 - sum_d Var(x - xhat) / sum_d Var(x)), L0, dead fraction, MSE."""
    dims = (2, model.d_model)
    sums = {k: torch.zeros(dims, dtype=torch.float64) for k in ("x", "x2", "e", "e2")}
    l0_total = 0.0
    rows = 0
    fired = torch.zeros(model.dict_size, dtype=torch.long)
    for _, raw in _batches(acts, batch_size, max_rows):
        x, f, xhat = _encode(model, raw, normalize)
        x, e = x.double().cpu(), (x - xhat).double().cpu()
        sums["x"] += x.sum(0)
        sums["x2"] += x.pow(2).sum(0)
        sums["e"] += e.sum(0)
        sums["e2"] += e.pow(2).sum(0)
        active = (f > 0).cpu()
        l0_total += float(active.sum())
        fired += active.sum(0)
        rows += x.shape[0]
    if rows == 0:
        raise ValueError("no activations to evaluate")
    var_x = (sums["x2"] / rows - (sums["x"] / rows).pow(2)).sum(-1)
    var_e = (sums["e2"] / rows - (sums["e"] / rows).pow(2)).sum(-1)
    fve = 1 - var_e / var_x
    mse = sums["e2"].sum(-1) / (rows * model.d_model)
    return CrosscoderMetrics(
        fve=(float(fve[BASE]), float(fve[FT])),
        mse=(float(mse[BASE]), float(mse[FT])),
        l0=l0_total / rows,
        dead_fraction=float((fired == 0).float().mean()),
        rows=rows,
        fired=fired,
    )


@dataclass
class TopActivations:
    """The k largest activations per latent: `values` and row `indices`, both [J, k].

    Slots a latent never filled hold value 0 and index -1.
    """

    latents: torch.Tensor
    values: torch.Tensor
    indices: torch.Tensor


@torch.no_grad()
def top_activations(
    model: Crosscoder,
    acts: ActivationSource,
    latents: Sequence[int] | torch.Tensor | None = None,
    *,
    k: int = 20,
    batch_size: int = 4096,
    max_rows: int | None = None,
    normalize: bool = True,
) -> TopActivations:
    """Max-activating rows per latent, merged batch by batch (memory O(J * (k + batch)))."""
    if latents is None:
        latents = torch.arange(model.dict_size)
    lat = torch.as_tensor(latents, dtype=torch.long)
    values = torch.zeros(lat.numel(), k)
    indices = torch.full((lat.numel(), k), -1, dtype=torch.long)
    for start, raw in _batches(acts, batch_size, max_rows):
        _, f, _ = _encode(model, raw, normalize)
        fj = f[:, lat.to(f.device)].T.float().cpu()  # [J, B]
        rows = torch.arange(start, start + fj.shape[1]).expand_as(fj)
        all_vals = torch.cat([values, fj], dim=1)
        all_idx = torch.cat([indices, rows], dim=1)
        best = all_vals.topk(k, dim=1).indices
        values, indices = all_vals.gather(1, best), all_idx.gather(1, best)
    indices = torch.where(values > 0, indices, torch.full_like(indices, -1))
    return TopActivations(latents=lat, values=values, indices=indices)
