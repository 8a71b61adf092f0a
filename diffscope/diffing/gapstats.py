"""Streaming gap statistics of MLP neurons, the arithmetic under the neuron profile: running sums of
a_base, a_ft and their gap per neuron, all layers stacked, and a tail histogram of |gap| binned by
the top bits of its float32 pattern; `finalise` turns them into the normalised metrics (mean, RMS,
tail quantile, decorrelation, output-weighted). Mergeable: every state is plain sums and counts."""

from __future__ import annotations

from dataclasses import dataclass

import torch

SUMS = ("n", "sb", "sbb", "sf", "sff", "sdd")


@dataclass
class LayerState:
    """Running sums of one mode, all layers stacked ([L, n]), and the tail histogram of |gap| codes
    at or above a per-neuron floor ([L, n, N_CODES]); values below the floor are only counted."""

    sums: dict[str, torch.Tensor]
    hist: torch.Tensor
    floor: torch.Tensor

    @classmethod
    def empty(cls, n_layers: int, n_neurons: int, device: torch.device | str = "cpu") -> LayerState:
        shape, dev = (n_layers, n_neurons), torch.device(device)
        sums = {k: torch.zeros(shape, dtype=torch.float64, device=dev) for k in SUMS}
        hist = torch.zeros(n_layers, n_neurons, N_CODES, dtype=torch.int64, device=dev)
        return cls(sums, hist, torch.full(shape, -1, dtype=torch.int32, device=dev))


# |gap| is binned by the top bits of its float32 pattern: exponent and 3 mantissa bits, i.e. bins
# 2^(1/8) (9%) wide from 2^-20 to 2^12. A shift is far cheaper than a search over bin edges.
_CODE_SHIFT = 20
_CODE_MIN = (127 - 20) << 3
N_CODES = 32 * 8 + 1


def gap_codes(absd: torch.Tensor) -> torch.Tensor:
    """Bin index (int32) of each |gap| value (0 holds zero and values under 2^-20)."""
    raw = absd.view(torch.int32) >> _CODE_SHIFT
    return raw.sub_(_CODE_MIN - 1).clamp_(0, N_CODES - 1)


def code_lower_edges(codes: torch.Tensor) -> torch.Tensor:
    """The smallest float32 value with each code (code 0: 0.0), so that for |gap| >= 0,
    `absd >= code_lower_edges(c)` holds exactly when `gap_codes(absd) >= c`."""
    bits = (codes.to(torch.int32) + (_CODE_MIN - 1)) << _CODE_SHIFT
    return torch.where(codes > 0, bits.view(torch.float32), 0.0)


def code_upper_edges() -> torch.Tensor:
    """Upper edge of each code bin (bin 0: 2^-20)."""
    i = torch.arange(N_CODES, dtype=torch.float64)
    exponent, mantissa = torch.div(i - 1, 8, rounding_mode="floor") - 20, (i - 1) % 8
    edges = torch.pow(2.0, exponent) * (1 + (mantissa + 1) / 8)
    edges[0] = 2.0**-20
    return edges


def accumulate(st: LayerState, layer: int, a_b, a_f, d, n_kept: int) -> None:
    """Fold one layer's [B, T, n] activations (skipped positions already zero) into the sums."""
    s, n = st.sums, a_b.shape[-1]
    flat_b, flat_f, flat_d = a_b.view(-1, n), a_f.view(-1, n), d.view(-1, n)
    ones = torch.ones(1, flat_b.shape[0], dtype=flat_b.dtype, device=flat_b.device)
    s["n"][layer] += n_kept
    s["sb"][layer] += (ones @ flat_b)[0].double()
    s["sf"][layer] += (ones @ flat_f)[0].double()
    s["sbb"][layer] += torch.linalg.vecdot(flat_b, flat_b, dim=0).double()
    s["sff"][layer] += torch.linalg.vecdot(flat_f, flat_f, dim=0).double()
    s["sdd"][layer] += torch.linalg.vecdot(flat_d, flat_d, dim=0).double()


def fold_tail(
    st: LayerState, layer: int, absd: torch.Tensor, skip: int, tail_quantile: float
) -> None:
    """Count the |gap| codes at or above the layer's per-neuron floor into the histogram; the
    floor comes from the first batch, a quantile well below the tail quantile."""
    n = absd.shape[-1]
    if st.floor[layer, 0] < 0:
        sample = gap_codes(absd[:, skip:].reshape(-1, n)[:1024])
        floor_q = max(0.5, 1 - 5 * (1 - tail_quantile))
        from_top = sample.shape[0] - max(1, int(floor_q * sample.shape[0])) + 1
        floor = sample.topk(from_top, dim=0).values[-1]
        st.floor[layer] = floor.clamp(min=0)
    hits = _flat_hits(absd.view(-1, n), code_lower_edges(st.floor[layer]))
    bins = (hits % n).to(torch.int32) * N_CODES + gap_codes(absd.view(-1)[hits])
    st.hist[layer].view(-1).index_add_(0, bins, torch.ones_like(bins, dtype=torch.int64))


def _flat_hits(values: torch.Tensor, floor: torch.Tensor, group: int = 8) -> torch.Tensor:
    """Flat indices of the entries of `values` [P, n] at or above `floor` [n], for sparse hits.

    Rows are first reduced by max in groups of `group`: only groups whose max reaches the floor
    are looked at entry by entry, which halves the cost of a plain mask-and-nonzero at the ~1%
    hit rate of a tail histogram."""
    P, n = values.shape
    while P % group:
        group //= 2
    if group == 1:
        return (values >= floor).view(-1).nonzero().view(-1)
    group_max = values.view(P // group, group, n).amax(dim=1)
    hit_groups = (group_max >= floor).view(-1).nonzero().view(-1)
    row, col = hit_groups // n, hit_groups % n
    flat = (row * (group * n) + col).unsqueeze(1) + torch.arange(group, device=values.device) * n
    inside = values.view(-1)[flat] >= floor[col].unsqueeze(1)
    return flat[inside]


def kept(acts: torch.Tensor, skip: int) -> torch.Tensor:
    """Captured [B, T, n] activations as float32, with the first `skip` positions zeroed in place."""
    acts = acts.float().contiguous()
    if skip:
        acts[:, :skip] = 0
    return acts


def finalise(st: LayerState, q: float, w_out: torch.Tensor):
    s = st.sums
    n = s["n"].clamp(min=1)
    mb, mf = s["sb"] / n, s["sf"] / n
    var_b = (s["sbb"] / n - mb * mb).clamp(min=0)
    var_f = (s["sff"] / n - mf * mf).clamp(min=0)
    pooled = ((var_b + var_f) / 2).sqrt()
    # a floor on the scale keeps nearly-dead neurons from dominating through division by ~0
    floor = 1e-2 * pooled.median(dim=1, keepdim=True).values + 1e-8
    scale = pooled + floor
    rms = (s["sdd"] / n).clamp(min=0).sqrt()
    # cov(b, f) from var(f - b) = var_b + var_f - 2 cov: one fewer running sum, and 1 - corr is
    # computed from the gap's own variance, exact where the gap is small
    mean_d = mf - mb
    var_d = (s["sdd"] / n - mean_d * mean_d).clamp(min=0)
    cov = (var_b + var_f - var_d) / 2
    corr = cov / (var_b.sqrt() * var_f.sqrt()).clamp(min=1e-12)
    decor = torch.where(s["sdd"] == 0, torch.zeros_like(corr), (1 - corr).clamp(min=0, max=2))
    tail = _tail_quantile(st, q)
    metrics = {
        "mean": (mean_d / scale).float(),
        "rms": (rms / scale).float(),
        "tail": (tail / scale).float(),
        "decorrelation": decor.float(),
        "output": (rms / scale * w_out).float(),
    }
    return metrics, {"base": mb.float(), "finetuned": mf.float()}


def _tail_quantile(st: LayerState, q: float) -> torch.Tensor:
    """The q-quantile of |gap| per neuron: the upper edge of the bin where the count from the top
    reaches (1 - q) * n. Where fewer values than that lie at or above the neuron's floor (the
    distribution moved down after the first batch), the floor's lower edge: a lower bound."""
    hist, n = st.hist, st.sums["n"]
    need = ((1 - q) * n).ceil().clamp(min=1)
    from_top = hist.flip(-1).cumsum(-1).double()
    short = from_top[..., -1] < need
    reached = (from_top < need.unsqueeze(-1)).sum(-1).clamp(max=hist.shape[-1] - 1)
    idx = hist.shape[-1] - 1 - reached
    edges = code_upper_edges()
    value = edges[idx]
    floor_edge = edges[(st.floor - 1).clamp(min=0)]
    value = torch.where(short, torch.where(st.floor > 0, floor_edge, 0.0), value)
    return torch.where(idx == 0, torch.zeros_like(value), value)
