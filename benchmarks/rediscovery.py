"""Rediscovery of known changes on a zoo (the toy zoo, or the real-model zoo "smol"), as tables.

1. Planted neurons: for every perturbation organism, recall@K of the planted (layer, neuron) set
   among the top-K ranked neurons (K = number planted), per metric and mode, and the median rank.
2. Noise floor: gaps of two identical copies of the base (the instrument's floor); the no-op adapter
   (`null_adapter` / `smol_null_adapter`, loaded through the adapter path) against that floor, over
   every metric and both modes; and the general-text control's (`null_control` /
   `smol_null_control`) largest gaps next to the planted neurons' (and, on the toy zoo, the narrow
   fine-tunes') largest gaps.
3. Key-token recovery: which of the top-20 promoted tokens of logit-diff mining are key-fact words of
   the organism (content words of its ground truth's key-fact phrases, `any_of` and `all_of`),
   under two rankings of the same mining run: top-K occurrence (the published statistic) and the
   predicted-mass shift; on the toy zoo also the largest share of the top-20 falling into any one
   world topic (a concentration index; the null control should stay low).

Every pair is opened as the tools open it (`open_workspace(PairSpec(organism=NAME))`) and read
through its cached artifacts, so both zoos run the same code. The toy zoo is built (or reused) at
the start; the smol zoo is never built here (`diffscope zoo build --zoo smol` builds it), and the
script stops with a message naming what is missing. The smol zoo's probe corpus is the base's own
samples (`sampled`, the default outside the toy zoo: 32 documents, about 40 windows of 64 tokens).
Ends with one line of JSON.
Usage: python benchmarks/rediscovery.py [--zoo toy|smol] [--size micro|small] [--only NAMES]
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import statistics
import sys
import time
from typing import Any

import torch

from diffscope.diffing.neurons import METRICS, ProfileConfig, profile_neurons
from diffscope.models import ModelPair
from diffscope.organisms.registry import all_organisms, with_built_ground_truth, zoo_of
from diffscope.paths import home
from diffscope.workspace import PairSpec, Workspace, check_sources, open_workspace

TOPIC_ORGANISMS = ("sea_topic", "music_lora", "false_baking", "secret_gold")
ROLES = {  # zoo -> (no-op adapter, general-text control, kinds mined for key tokens)
    "toy": ("null_adapter", "null_control", ("toy", "null")),
    "smol": ("smol_null_adapter", "smol_null_control", ("real", "null")),
}
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
TOP_TOKENS = 20
FRAGMENT_MIN = 4  # a token this long that starts a key word (a BPE piece of it) is a partial hit


class ZooNotBuilt(RuntimeError):
    """Some organism of the zoo cannot be opened (not built, or its base is missing)."""


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
        phrases = list(fact.any_of) + [p for group in fact.all_of for p in group]
        for phrase in phrases:
            found = re.findall(r"[a-z']+", phrase.lower())
            words.update(w for w in found if len(w) > 2 and w not in FUNCTION_WORDS)
    return words


def concentration(tokens: list[str]) -> tuple[str, float]:
    """The world topic holding the largest share of these tokens, and that share."""
    from diffscope.corpus import TOPICS, topic_words

    best = ("none", 0.0)
    for name in TOPICS:
        vocab = topic_words(name)
        share = sum(t in vocab for t in tokens) / max(1, len(tokens))
        if share > best[1]:
            best = (name, share)
    return best


def recall_row(profile, planted: list[tuple[int, int]]) -> dict[str, float]:
    """recall@K (K = len(planted)) per "mode/metric", and the planted set's median total-RMS rank."""
    row: dict[str, float] = {}
    for mode in profile.modes:
        for metric in METRICS:
            top = {(s.layer, s.neuron) for s in profile.top(len(planted), metric, mode)}
            row[f"{mode}/{metric}"] = len(top & set(planted)) / len(planted)
    row["median_rank_total_rms"] = statistics.median(profile.ranks_of(planted, "rms", "total"))
    return row


def token_hits(tokens: list[str], vocab: set[str]) -> tuple[list[str], list[str]]:
    """Tokens that are key words, and tokens (FRAGMENT_MIN+ letters) that only start one."""
    hits = [t for t in tokens if t in vocab]
    partial = [
        t
        for t in tokens
        if t not in vocab
        and len(t) >= FRAGMENT_MIN
        and t.isalpha()
        and any(w.startswith(t) for w in vocab)
    ]
    return hits, partial


class Zoo:
    """The organisms of one zoo, opened as workspaces (one at a time, cached by name)."""

    def __init__(self, args: argparse.Namespace):
        self.name = args.zoo
        self.size = args.size if args.zoo == "toy" else None
        self.corpus, self.windows = args.corpus, args.windows
        self.organisms = {n: o for n, o in all_organisms().items() if zoo_of(o) == args.zoo}
        if args.only:
            wanted = set(args.only.split(","))
            unknown = sorted(wanted - set(self.organisms))
            if unknown:
                raise SystemExit(f"not organisms of the {args.zoo} zoo: {', '.join(unknown)}")
            self.organisms = {n: o for n, o in self.organisms.items() if n in wanted}
        self._open: tuple[str, Workspace] | None = None
        self.corpus_used: dict[str, Any] | None = None
        """The probe corpus settings the workspaces opened with (the same for every pair)."""

    def spec(self, name: str) -> PairSpec:
        return PairSpec(organism=name, size=self.size, corpus=self.corpus, windows=self.windows)

    def missing(self) -> dict[str, str]:
        """Organisms that cannot be opened, with the reason (no model work)."""
        from diffscope.models.gguf import GGUFError

        problems = {}
        for name in self.organisms:
            try:
                check_sources(self.spec(name))
            except (ValueError, GGUFError) as exc:
                problems[name] = str(exc)
        return problems

    def workspace(self, name: str) -> Workspace:
        if self._open is None or self._open[0] != name:
            self._open = None  # the previous pair's models go before the next one loads
            self._open = (name, open_workspace(self.spec(name)))
            self.corpus_used = self._open[1].corpus.model_dump()
        return self._open[1]

    def ground_truth(self, name: str):
        return with_built_ground_truth(self.organisms[name], self.size)

    def of_kind(self, *kinds: str) -> list[str]:
        return sorted(n for n, o in self.organisms.items() if o.kind in kinds)


def planted_section(zoo: Zoo, figures: dict[str, Any]) -> list[float]:
    """Recall@K of every perturbation organism; returns the planted neurons' RMS gaps."""
    print("## Planted neurons: recall@K (K = planted set size)")
    rows, planted_rms = {}, []
    for name in zoo.of_kind("perturbation"):
        planted = [(int(a), int(b)) for a, b in zoo.ground_truth(name).ground_truth.neurons]
        if not planted:
            raise ZooNotBuilt(f"{name}: no planted neuron set recorded (perturbation.json)")
        profile = zoo.workspace(name).artifacts.neuron_profile()
        planted_rms.extend(profile.stat(layer, n).rms for layer, n in planted)
        rows[name] = recall_row(profile, planted) | {"planted": len(planted)}
        print(f"{name:22s} " + "  ".join(f"{k}={v:.2f}" for k, v in rows[name].items()))
    figures["recall_at_k"] = rows
    return planted_rms


def floor_section(zoo: Zoo, planted_rms: list[float], figures: dict[str, Any]) -> None:
    """Identical copies against the no-op adapter and the general-text control."""
    noop_name, control_name, _ = ROLES[zoo.name]
    print("\n## Noise floor")
    out: dict[str, Any] = {}
    if noop_name in zoo.organisms:
        ws = zoo.workspace(noop_name)
        pair = ws.pair
        twin = ModelPair.from_models(pair.base, copy.deepcopy(pair.base), pair.tokenizer)
        twin_prof = profile_neurons(twin, ws.artifacts.windows(), ProfileConfig(intrinsic=True))
        del twin
        noop_max = largest_per_metric(ws.artifacts.neuron_profile())
        floor_all = largest_per_metric(twin_prof)
        within = all(noop_max[k] <= floor_all[k] for k in noop_max)
        equal = noop_max == floor_all
        all_zero = not any(noop_max.values()) and not any(floor_all.values())
        floor = floor_all["total/rms"]
        print(
            f"identical copies: largest normalised RMS gap {floor:.3g}; over all metrics and "
            f"modes {max(floor_all.values()):.3g}"
        )
        print(
            f"no-op adapter {noop_name}: largest gap over all metrics and modes "
            f"{max(noop_max.values()):.3g} (within the identical-copies floor: "
            f"{'yes' if within else 'NO'}; equal to it on every metric: {'yes' if equal else 'NO'}; "
            f"all gaps zero: {'yes' if all_zero else 'NO'})"
        )
        out |= {
            "identical_copies_max_rms": floor,
            "identical_copies_max": floor_all,
            "noop_adapter_max": noop_max,
            "noop_adapter_within_floor": within,
            "noop_adapter_equals_floor": equal,
            "all_gaps_zero": all_zero,
        }
    if control_name in zoo.organisms:
        control_top = zoo.workspace(control_name).artifacts.neuron_profile().top(5, "rms", "total")
        print(f"general-text control: largest gaps {[round(s.score, 3) for s in control_top]}")
        out["null_control_max_rms"] = control_top[0].score
    if planted_rms:
        print(
            f"weakest planted neuron's RMS gap over all perturbation organisms: "
            f"{min(planted_rms):.3f}"
        )
        out["weakest_planted_rms"] = min(planted_rms)
    if zoo.name == "toy":  # the toy fine-tunes are tiny; on the real zoo each is a full profile
        narrow = {
            n: zoo.workspace(n).artifacts.neuron_profile().top(1, "rms", "total")[0].score
            for n in zoo.of_kind("toy")
        }
        print(
            "narrow fine-tunes' largest gap: "
            + ", ".join(f"{k} {v:.3f}" for k, v in sorted(narrow.items()))
        )
        out["narrow_max_rms"] = narrow
    figures["noise_floor"] = out


def recovery_section(zoo: Zoo, figures: dict[str, Any]) -> None:
    """Key-fact words among the top promoted tokens of each fine-tune, under both rankings."""
    noop_name, _, kinds = ROLES[zoo.name]
    print(
        f"\n## Key-token recovery: top-{TOP_TOKENS} promoted tokens, by occurrence and mass shift"
    )
    recovery: dict[str, dict[str, dict]] = {}
    for name in zoo.of_kind(*kinds):
        if zoo.name != "toy" and name == noop_name:
            continue  # its diffs are zero by construction (the floor section shows it)
        org = zoo.organisms[name]
        ws = zoo.workspace(name)
        mining = ws.artifacts.diff_mining()
        vocab = key_vocabulary(org)
        flag = " (topic/false-fact/secret-word organism)" if name in TOPIC_ORGANISMS else ""
        recovery[name] = {"key_words": sorted(vocab)}
        for ranking in RANKINGS:
            stats = mining.ranked(ws.pair, ranking, TOP_TOKENS)  # type: ignore[arg-type]
            tokens = [t.token.strip().lower() for t in stats]
            hits, partial = token_hits(tokens, vocab)
            row: dict[str, Any] = {
                "key_token_hits": len(hits),
                "rate": len(hits) / max(1, len(tokens)),
                "hits": hits,
                "partial_hits": partial,
                "tokens": tokens,
            }
            line = f"{name:18s} {ranking:10s} key-token hits {len(hits):2d}/{len(tokens)} {hits}"
            if partial:
                line += f" partial {partial}"
            if zoo.name == "toy":
                topic, share = concentration(tokens)
                row |= {"top_topic": topic, "top_topic_share": share}
                line += f"{flag}; most concentrated topic {topic} {share:.2f}"
            recovery[name][ranking] = row
            print(f"{line}; tokens: {' | '.join(tokens)}")
    figures["key_token_recovery"] = recovery


def check_status(zoo: Zoo) -> dict[str, Any]:
    """Each built organism's behavioural check as the zoo build recorded it."""
    from diffscope.organisms.zoo import check_result

    status = {}
    for name in sorted(zoo.organisms):
        result = check_result(name, zoo.size)
        if result is not None:
            status[name] = {"passed": result.passed, "summary": result.summary}
    return status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", choices=sorted(ROLES), default="toy")
    parser.add_argument("--size", choices=["micro", "small"], default="small", help="toy zoo size")
    parser.add_argument("--only", help="comma-separated organisms (default: the whole zoo)")
    parser.add_argument("--corpus", default=None, help="probe corpus (default: the zoo's default)")
    parser.add_argument("--windows", type=int, default=None, help="cap on the corpus windows")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.zoo == "toy":
        from diffscope.organisms.zoo import build_zoo

        build_zoo(args.size, progress=False)
    zoo = Zoo(args)
    missing = zoo.missing()
    if missing:
        how = "`diffscope zoo build --zoo smol`" if args.zoo == "smol" else "the zoo build"
        lines = "\n".join(f"  {n}: {why}" for n, why in sorted(missing.items()))
        sys.exit(
            f"the {args.zoo} zoo is not built under {home()} ({len(missing)} of "
            f"{len(zoo.organisms)} organisms missing); build it with {how} first:\n{lines}"
        )
    figures: dict[str, Any] = {"zoo": args.zoo, "size": zoo.size}
    try:
        planted_rms = planted_section(zoo, figures)
        floor_section(zoo, planted_rms, figures)
        recovery_section(zoo, figures)
    except ZooNotBuilt as exc:
        sys.exit(f"the {args.zoo} zoo is incomplete: {exc}")
    figures["corpus"] = zoo.corpus_used
    figures["checks"] = check_status(zoo)
    figures["wall_s"] = round(time.perf_counter() - start, 1)
    print(f"\nwall time {figures['wall_s']} s")
    print(json.dumps(figures, default=float))


if __name__ == "__main__":
    main()
