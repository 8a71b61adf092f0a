"""Neuron clusters: the top-gap neurons grouped by the shape of their gap over a probe set, each cluster
with its neurons, the tokens where its members' gaps peak, and a short label built from those tokens."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch

from diffscope.diffing.neurons import NeuronProfile
from diffscope.models.hooks import capture, neuron_activations_from_mlp_input
from diffscope.models.pair import ModelPair


@dataclass
class NeuronCluster:
    """A group of neurons whose gaps rise and fall together over the probe set."""

    index: int
    label: str
    neurons: list[tuple[int, int]]
    shared_tokens: list[tuple[str, int]]
    peak_contexts: list[str]
    mean_score: float
    coherence: float = 0.0
    layers: dict[int, int] = field(default_factory=dict)


@torch.no_grad()
def gap_matrix(
    pair: ModelPair,
    windows: torch.Tensor,
    neurons: list[tuple[int, int]],
    mode: str = "total",
    batch_size: int = 8,
) -> torch.Tensor:
    """Gap a_ft - a_base of each given neuron at every probe position: [len(neurons), N * (T-1)]."""
    layers = sorted({layer for layer, _ in neurons})
    rows: list[torch.Tensor] = []
    for start in range(0, windows.shape[0], batch_size):
        batch = pair.batch_from_ids(windows[start : start + batch_size])
        with capture(pair.base, pair.family, neurons=layers, mlp_in=layers) as base:
            pair.base(**batch.model_inputs())
        if mode == "intrinsic":
            ft = {
                layer: neuron_activations_from_mlp_input(
                    pair.finetuned, pair.family, layer, base.mlp_in[layer]
                )
                for layer in layers
            }
        else:
            with capture(pair.finetuned, pair.family, neurons=layers) as got:
                pair.finetuned(**batch.model_inputs())
            ft = got.neurons
        cols = [(ft[layer] - base.neurons[layer])[:, 1:, n].reshape(-1) for layer, n in neurons]
        rows.append(torch.stack(cols))
    return torch.cat(rows, dim=1).float()


def _auto_clusters(n: int) -> int:
    return max(1, min(8, round((n / 2) ** 0.5)))


def cluster_neurons(
    pair: ModelPair,
    profile: NeuronProfile,
    windows: torch.Tensor,
    *,
    top: int = 48,
    n_clusters: int | None = None,
    metric: str = "rms",
    mode: str = "total",
    tokens_per_cluster: int = 8,
) -> list[NeuronCluster]:
    """Cluster the `top` highest-gap neurons by the cosine similarity of their gap profiles over
    `windows` (agglomerative, average linkage); clusters come strongest first. Neurons whose gap is
    zero are left out, so identical models give no clusters."""
    from sklearn.cluster import AgglomerativeClustering

    if windows.ndim != 2 or windows.shape[0] == 0:
        raise ValueError("the probe set is empty: need token windows [N, T] with N > 0")
    if top < 2:
        raise ValueError("need at least two neurons to cluster")
    # neurons without any gap (identical models, dead units) have nothing to cluster by
    stats = [s for s in profile.top(top, metric, mode) if s.score > 0]
    if not stats:
        return []
    neurons = [(s.layer, s.neuron) for s in stats]
    gaps = gap_matrix(pair, windows, neurons, mode)
    moved = (gaps.abs().sum(dim=1) > 0).nonzero().view(-1).tolist()
    if not moved:
        return []
    stats, neurons, gaps = [stats[i] for i in moved], [neurons[i] for i in moved], gaps[moved]
    unit = gaps / gaps.norm(dim=1, keepdim=True).clamp(min=1e-8)
    k = min(n_clusters or _auto_clusters(len(neurons)), len(neurons))
    if k == 1:
        labels = [0] * len(neurons)
    else:
        model = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average")
        labels = model.fit_predict(unit.numpy()).tolist()
    flat_ids = windows[:, 1:].reshape(-1)
    clusters = []
    for c in sorted(set(labels)):
        members = [i for i, lab in enumerate(labels) if lab == c]
        strength = gaps[members].abs().mean(0)
        peaks = strength.topk(min(64, strength.numel())).indices
        counts = Counter(pair.token_str(int(flat_ids[p])).strip() for p in peaks)
        for i in members:
            layer, n = neurons[i]
            for ex in profile.exemplars(layer, n, pair.tokenizer, k=3):
                counts[ex.token.strip()] += 1
        counts.pop("", None)
        shared = counts.most_common(tokens_per_cluster)
        sims = unit[members] @ unit[members].T
        coherence = float(sims.mean()) if len(members) > 1 else 1.0
        contexts = []
        for p in peaks[:3].tolist():
            w, t = divmod(p, windows.shape[1] - 1)
            row = windows[w].tolist()
            t += 1
            contexts.append(
                pair.decode(row[max(0, t - 10) : t])
                + f"[[{pair.token_str(row[t])}]]"
                + pair.decode(row[t + 1 : t + 4])
            )
        clusters.append(
            NeuronCluster(
                index=0,
                label=" / ".join(tok for tok, _ in shared[:3]) or "(no shared tokens)",
                neurons=[neurons[i] for i in members],
                shared_tokens=shared,
                peak_contexts=contexts,
                mean_score=float(sum(stats[i].score for i in members) / len(members)),
                coherence=coherence,
                layers=dict(Counter(neurons[i][0] for i in members)),
            )
        )
    clusters.sort(key=lambda cl: cl.mean_score * len(cl.neurons), reverse=True)
    for i, cl in enumerate(clusters):
        cl.index = i
    return clusters
