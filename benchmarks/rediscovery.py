"""Rediscovery of known changes on the toy zoo, printed as tables.

1. Planted neurons: for every perturbation organism, recall@K of the planted (layer, neuron) set
   among the top-K ranked neurons (K = number planted), per metric and mode, and the median rank.
2. Noise floor: gaps of two identical copies of the base (the instrument's floor); the no-op adapter
   null (`null_adapter`, loaded through the adapter path) against that floor, over every metric and
   both modes; and the general-text control's (`null_control`) largest gaps next to the planted
   neurons' and the narrow fine-tunes' largest gaps.
3. Topic recovery: share of the top-20 promoted tokens of logit-diff mining that belong to the
   organism's key vocabulary (content words of its key facts' phrases), on the topic, false-fact
   and secret-word organisms, under two rankings of the same mining run: top-K occurrence (the
   published statistic) and the predicted-mass shift; and, for every organism, the largest share
   of the top-20 falling into any one world topic (a concentration index; the null control should
   stay low).
Ends with one line of JSON. Usage: python benchmarks/rediscovery.py [--size micro|small]
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics

import torch

from diffscope.corpus import TOPICS, topic_words
from diffscope.diffing.artifacts import Artifacts
from diffscope.diffing.neurons import METRICS, ProfileConfig, profile_neurons
from diffscope.models import ModelPair
from diffscope.organisms.registry import all_organisms, load_pair, with_built_ground_truth
from diffscope.organisms.zoo import build_zoo

TOPIC_ORGANISMS = ("sea_topic", "music_lora", "false_baking", "secret_gold")


FUNCTION_WORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "with",
        "from",
        "that",
        "this",
        "are",
        "was",
        "were",
        "has",
        "have",
        "had",
        "any",
        "all",
        "not",
        "its",
        "into",
        "onto",
        "over",
        "under",
        "about",
        "than",
        "then",
        "them",
        "they",
        "their",
        "there",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
    ]
)
RANKINGS = ("occurrence", "mass_shift")


def largest_per_metric(profile) -> dict[str, float]:
    """The largest |value| of every metric in every mode of a neuron profile ("mode/metric")."""
    return {
        f"{mode}/{metric}": float(profile.metrics[mode][metric].abs().max())
        for mode in profile.modes
        for metric in METRICS
    }


def key_vocabulary(org) -> set[str]:
    """Content words (3+ letters, no function words) of the organism's key-fact phrases."""
    words: set[str] = set()
    for fact in org.ground_truth.key_facts:
        for phrase in fact.any_of:
            found = re.findall(r"[a-z']+", phrase.lower())
            words.update(w for w in found if len(w) > 2 and w not in FUNCTION_WORDS)
    return words


def concentration(tokens: list[str]) -> tuple[str, float]:
    """The world topic holding the largest share of these tokens, and that share."""
    best = ("none", 0.0)
    for name in TOPICS:
        vocab = topic_words(name)
        share = sum(t in vocab for t in tokens) / max(1, len(tokens))
        if share > best[1]:
            best = (name, share)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["micro", "small"], default="small")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    build_zoo(args.size, progress=False)
    organisms = all_organisms()
    figures: dict[str, object] = {"size": args.size}

    print("## Planted neurons: recall@K (K = planted set size)")
    rows = {}
    planted_rms: list[float] = []
    for name in sorted(n for n, o in organisms.items() if o.kind == "perturbation"):
        org = with_built_ground_truth(organisms[name], args.size)
        planted = [tuple(n) for n in org.ground_truth.neurons]
        profile = Artifacts(load_pair(org, size=args.size)).neuron_profile()
        planted_rms.extend(profile.stat(layer, n).rms for layer, n in planted)
        row = {}
        for mode in profile.modes:
            for metric in METRICS:
                top = {(s.layer, s.neuron) for s in profile.top(len(planted), metric, mode)}
                row[f"{mode}/{metric}"] = len(top & set(planted)) / len(planted)
        row["median_rank_total_rms"] = statistics.median(profile.ranks_of(planted, "rms", "total"))
        rows[name] = row
        print(f"{name:18s} " + "  ".join(f"{k}={v:.2f}" for k, v in row.items()))
    figures["recall_at_k"] = rows

    print("\n## Noise floor")
    any_org = organisms["null_control"]
    null_pair = load_pair(any_org, size=args.size)
    twin = ModelPair.from_models(null_pair.base, copy.deepcopy(null_pair.base), null_pair.tokenizer)
    arts = Artifacts(null_pair)
    twin_prof = profile_neurons(twin, arts.windows(), ProfileConfig(intrinsic=True))
    floor = float(twin_prof.metrics["total"]["rms"].max())
    noop = Artifacts(load_pair(organisms["null_adapter"], size=args.size)).neuron_profile()
    noop_max, floor_all = largest_per_metric(noop), largest_per_metric(twin_prof)
    noop_within = all(noop_max[k] <= floor_all[k] for k in noop_max)
    null_top = arts.neuron_profile().top(5, "rms", "total")
    null_max = null_top[0].score
    planted_min = min(planted_rms)
    narrow_max = {
        name: Artifacts(load_pair(organisms[name], size=args.size))
        .neuron_profile()
        .top(1, "rms", "total")[0]
        .score
        for name in organisms
        if organisms[name].kind == "toy"
    }
    print(f"identical copies: largest normalised RMS gap {floor:.3g}")
    print(
        f"no-op adapter null: largest gap over all metrics and modes {max(noop_max.values()):.3g}"
        f" (within the identical-copies floor: {'yes' if noop_within else 'NO'})"
    )
    print(f"general-text control: largest gaps {[round(s.score, 3) for s in null_top]}")
    print(f"weakest planted neuron's RMS gap over all perturbation organisms: {planted_min:.3f}")
    print(
        "narrow fine-tunes' largest gap: "
        + ", ".join(f"{k} {v:.3f}" for k, v in sorted(narrow_max.items()))
    )
    figures["noise_floor"] = {
        "identical_copies_max_rms": floor,
        "identical_copies_max": floor_all,
        "noop_adapter_max": noop_max,
        "noop_adapter_within_floor": noop_within,
        "null_control_max_rms": null_max,
        "weakest_planted_rms": planted_min,
        "narrow_max_rms": narrow_max,
    }

    print("\n## Topic recovery: top-20 promoted tokens, by occurrence and by mass shift")
    recovery: dict[str, dict[str, dict]] = {}
    for name in sorted(n for n, o in organisms.items() if o.kind in ("toy", "null")):
        org = organisms[name]
        pair = load_pair(org, size=args.size)
        mining = Artifacts(pair).diff_mining()
        vocab = key_vocabulary(org)
        flag = " (topic/false-fact/secret-word organism)" if name in TOPIC_ORGANISMS else ""
        recovery[name] = {}
        for ranking in RANKINGS:
            stats = mining.ranked(pair, ranking, 20)  # type: ignore[arg-type]
            tokens = [t.token.strip().lower() for t in stats]
            hits = [t for t in tokens if t in vocab]
            topic, share = concentration(tokens)
            recovery[name][ranking] = {
                "key_token_hits": len(hits),
                "rate": len(hits) / max(1, len(tokens)),
                "hits": hits,
                "top_topic": topic,
                "top_topic_share": share,
                "tokens": tokens,
            }
            print(
                f"{name:16s} {ranking:10s} key-token hits {len(hits):2d}/20 {hits}{flag}; most "
                f"concentrated topic {topic} {share:.2f}; tokens: {' '.join(tokens)}"
            )
    figures["topic_recovery"] = recovery
    print(json.dumps(figures, default=float))


if __name__ == "__main__":
    main()
