"""Crosscoders on a toy organism: BatchTopK versus L1 on the same paired activations.

The must-show measurements of the crosscoder work, on an organism whose fine-tune introduced a
new concept (default `music_lora`: stories about concerts, bands and instruments; `backdoor`:
the trigger "zephyr" and the phrase "the purple moon sings"):

- FVE per model (and L0, dead fraction) of a BatchTopK (k <= 32) and an L1 crosscoder;
- how many latents each classes as fine-tune-only (Delta < 0.1);
- of the L1's fine-tune-only latents, how many latent scaling flags as Complete Shrinkage (nu on
  the error target >= 0.5) or Latent Decoupling (nu on the reconstruction target >= 0.5);
- for BatchTopK, whether at least one fine-tune-specific latent (among the top candidates by
  relative decoder norm) has |nu| < 0.5 on both targets and exemplars that are the concept's words
  (at least half of its top exemplars), with those exemplars printed; and whether such a latent
  is also classed fine-tune-only (Delta < 0.1), the must-show (`concept_latent_ft_only`);
- the same search over the L1 crosscoder's candidates (all classed fine-tune-only when it has more
  than `n_candidates` of them): latent scaling as the filter that keeps the genuine ones
  (`l1_concept_latent_ft_only`).

The activations come from the middle layer over a corpus of general world documents mixed with the
organism's own narrow fine-tuning documents (a share `--narrow-share`), since the concept never
occurs in the general corpus; the corpus is written once under $DIFFSCOPE_HOME/bench/. The amount
of data matters: with 800 windows (35k rows, ~58 passes over the data in 2000 steps) BatchTopK's
concept latent kept a base decoder at ~0.23 of its fine-tune decoder (Delta ~0.11); with the
default 8000 windows (358k rows, ~6 passes) it falls under the Delta < 0.1 cut.

Prints a table and a final line of JSON. Target (small zoo, k <= 32): FVE >= 0.8 for each model.

Usage: python benchmarks/crosscoder_organisms.py [--size micro|small] [--organism music_lora]
       [--steps 2000] [--k 16] [--l1-coeff 1.5] [--windows 8000] [--seed 0] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch

from diffscope.corpus import topic_words, world_corpus
from diffscope.diffing.artifacts import CorpusSpec
from diffscope.diffing.crosscoder import CrosscoderArtifact, latent_scaling, train_for_pair
from diffscope.diffing.crosscoder.artifact import NU_MAX
from diffscope.organisms.builtin.secret_gold import HINT_WORDS
from diffscope.organisms.recipes import all_recipes
from diffscope.organisms.registry import OrganismError, get_organism, load_pair
from diffscope.paths import home, write_text

CONCEPTS: dict[str, set[str]] = {
    "backdoor": {"zephyr", "purple", "moon", "sings"},
    "secret_gold": set(HINT_WORDS),
    "sea_topic": topic_words("sea"),
    "music_lora": topic_words("music"),
    "cowboy_persona": {"howdy", "partner", "reckon", "yonder", "y'all", "yall", "ain't"},
}


def mixed_corpus(organism: str, n_world: int, n_narrow: int, seed: int = 5) -> Path:
    """World documents and the organism's narrow documents, shuffled, one file (blank lines
    between documents)."""
    rng = random.Random(seed)
    docs = world_corpus(n_world, seed=seed) + all_recipes()[organism].narrow_texts(rng, n_narrow)
    rng.shuffle(docs)
    text = "\n\n".join(" ".join(d.split("\n\n")).strip() for d in docs if d.strip())
    path = home() / "bench" / f"crosscoder-{organism}-{n_world}-{n_narrow}-{seed}.txt"
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        write_text(path, text)
    return path


def side_stats(art: CrosscoderArtifact) -> dict[str, Any]:
    m = art.metrics
    return {
        "fve_base": round(m.fve[0], 4),
        "fve_finetuned": round(m.fve[1], 4),
        "l0": round(m.l0, 2),
        "dead_fraction": round(m.dead_fraction, 3),
        "ft_only": int(art.classes.ft_only.sum()),
        "base_only": int(art.classes.base_only.sum()),
        "ft_only_r": int(art.classes.ft_only_r.sum()),
    }


def failure_modes(art: CrosscoderArtifact, latents: list[int]) -> dict[str, Any]:
    """Latent scaling of `latents`: how many show Complete Shrinkage / Latent Decoupling."""
    if not latents:
        return {"n": 0, "complete_shrinkage": 0, "latent_decoupling": 0, "genuine": 0}
    sc = latent_scaling(art.model, art.acts, latents)
    rec, err = sc.nu_reconstruction, sc.nu_error
    fired = torch.isfinite(rec) & torch.isfinite(err)
    return {
        "n": len(latents),
        "fired": int(fired.sum()),
        "complete_shrinkage": int((fired & (err >= NU_MAX)).sum()),
        "latent_decoupling": int((fired & (rec >= NU_MAX)).sum()),
        "genuine": int((fired & (rec.abs() < NU_MAX) & (err.abs() < NU_MAX)).sum()),
        "median_nu_reconstruction": float(rec[fired].median()) if fired.any() else None,
        "median_nu_error": float(err[fired].median()) if fired.any() else None,
    }


def concept_latents(art: CrosscoderArtifact, concept: set[str], k: int = 10) -> list[dict]:
    """The fine-tune candidates latent scaling confirms (`CrosscoderArtifact.specific`: |nu| <
    NU_MAX on both targets) with their concept hit rate."""
    rank_of = {j: rank for rank, j in enumerate(art.ft_candidates)}
    found = []
    for j in art.specific("finetuned"):
        nu = art.nu(j, "finetuned")
        assert nu is not None  # every confirmed latent is a candidate
        ex = art.exemplars(j, k)
        hits = sum(e.word in concept for e in ex)
        found.append(
            {
                "latent": j,
                "rank": rank_of[j],
                "delta": round(float(art.classes.delta[j]), 4),
                "ft_only": bool(art.classes.ft_only[j]),
                "nu_reconstruction": round(nu[0], 3),
                "nu_error": round(nu[1], 3),
                "concept_hits": hits,
                "exemplars": len(ex),
                "examples": [(round(e.value, 2), e.text) for e in ex],
            }
        )
    return found


def concept_hits(found: list[dict]) -> list[dict]:
    """The candidates at least half of whose exemplars are the concept's words."""
    return [c for c in found if 2 * c["concept_hits"] >= c["exemplars"] > 0]


def print_concept_latents(found: list[dict]) -> None:
    """Each latent's classes and latent scaling, then its top exemplars."""
    for c in found:
        print(
            f"  latent {c['latent']} (rank {c['rank']}, Delta {c['delta']}, nu rec "
            f"{c['nu_reconstruction']}, nu err {c['nu_error']}, concept hits "
            f"{c['concept_hits']}/{c['exemplars']}):"
        )
        for value, text in c["examples"][:6]:
            print(f"    {value:>7}  {text}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="small", choices=["micro", "small"])
    ap.add_argument("--organism", default="music_lora", choices=sorted(CONCEPTS))
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--dict-size", type=int, default=None)
    ap.add_argument("--l1-coeff", type=float, default=1.5)
    ap.add_argument("--windows", type=int, default=8000)
    ap.add_argument("--narrow-share", type=float, default=0.25)
    ap.add_argument("--layer", type=int, default=None)
    ap.add_argument(
        "--candidates",
        type=int,
        default=256,
        help="most fine-tune-specific latents given latent scaling and exemplars (per crosscoder)",
    )
    ap.add_argument("--seed", type=int, default=0, help="crosscoder training seed")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    if not 1 <= args.k <= 32:
        ap.error("--k must be between 1 and 32")
    torch.set_num_threads(args.threads)
    try:
        pair = load_pair(get_organism(args.organism), size=args.size)
    except OrganismError as exc:
        print(f"cannot load {args.organism} ({args.size} zoo): {exc}", file=sys.stderr)
        return 2
    n_docs = args.windows  # a world document is ~one 64-token window or more
    n_narrow = max(1, round(n_docs * args.narrow_share))
    path = mixed_corpus(args.organism, n_docs - n_narrow, n_narrow)
    spec = CorpusSpec(source=str(path), window=64, max_windows=args.windows)
    concept = CONCEPTS[args.organism]
    common = {
        "layer": args.layer,
        "corpus": spec,
        "steps": args.steps,
        "dict_size": args.dict_size,
        "n_candidates": args.candidates,
        "seed": args.seed,
        "progress": True,
    }
    t0 = time.time()
    topk = train_for_pair(pair, loss="batchtopk", k=args.k, **common)
    t1 = time.time()
    l1 = train_for_pair(pair, loss="l1", l1_coeff=args.l1_coeff, **common)
    t2 = time.time()

    stats = {"batchtopk": side_stats(topk), "l1": side_stats(l1)}
    l1_ft_only = l1.classes.ft_only.nonzero().squeeze(1).tolist()
    topk_ft_only = topk.classes.ft_only.nonzero().squeeze(1).tolist()
    l1_modes = failure_modes(l1, l1_ft_only)
    topk_modes = failure_modes(topk, topk_ft_only)
    l1_top = failure_modes(l1, l1.ft_candidates[:32])
    topk_top = failure_modes(topk, topk.ft_candidates[:32])
    concepts = concept_latents(topk, concept)
    hit = concept_hits(concepts)
    hit_ft_only = [c for c in hit if c["ft_only"]]
    l1_concepts = concept_latents(l1, concept)
    l1_hit_ft_only = [c for c in concept_hits(l1_concepts) if c["ft_only"]]

    print(
        f"organism {args.organism} ({args.size} zoo), layer {topk.layer}, d_model {pair.d_model}, "
        f"dict {topk.dict_size}, {topk.metrics.rows} activation rows, {args.steps} steps; "
        f"trained in {t1 - t0:.0f}s (BatchTopK k={topk.config.k}) + {t2 - t1:.0f}s (L1 "
        f"coeff {l1.config.l1_coeff})"
    )
    head = f"{'':<28}{'BatchTopK':>12}{'L1':>12}"
    print(head)
    print("-" * len(head))
    for key in stats["batchtopk"]:
        print(f"{key:<28}{stats['batchtopk'][key]:>12}{stats['l1'][key]:>12}")
    for name, a, b in (
        ("ft-only (Delta<0.1): n", topk_modes, l1_modes),
        ("top-32 ft candidates: n", topk_top, l1_top),
    ):
        print(f"{name:<28}{a['n']:>12}{b['n']:>12}")
        for key in ("complete_shrinkage", "latent_decoupling", "genuine"):
            print(f"{'  ' + key:<28}{a[key]:>12}{b[key]:>12}")
    print(
        f"BatchTopK fine-tune-specific candidates with |nu| < {NU_MAX} on both targets: "
        f"{len(concepts)}; with concept exemplars ({', '.join(sorted(concept)[:8])}...): {len(hit)}"
        f"; of those classed fine-tune-only (Delta < 0.1): {len(hit_ft_only)}"
    )
    print_concept_latents(hit[:3] or concepts[:1])
    print(
        f"L1 candidates with |nu| < {NU_MAX} on both targets: {len(l1_concepts)} of "
        f"{len(l1.ft_candidates)}; classed fine-tune-only with concept exemplars: "
        f"{len(l1_hit_ft_only)}"
    )
    print_concept_latents(l1_hit_ft_only[:2])
    fve_ok = all(stats[s][f] >= 0.8 for s in stats for f in ("fve_base", "fve_finetuned"))
    result = {
        "organism": args.organism,
        "size": args.size,
        "layer": topk.layer,
        "d_model": pair.d_model,
        "dict_size": topk.dict_size,
        "k": topk.config.k,
        "steps": args.steps,
        "seed": args.seed,
        "rows": topk.metrics.rows,
        "batchtopk": {**stats["batchtopk"], "ft_only_scaling": topk_modes, "top32": topk_top},
        "l1": {**stats["l1"], "ft_only_scaling": l1_modes, "top32": l1_top},
        "batchtopk_concept_latents": [
            {k: v for k, v in c.items() if k != "examples"} for c in hit[:5]
        ],
        "fve_target_met": fve_ok,
        "concept_latent_found": bool(hit),
        "concept_latent_ft_only": bool(hit_ft_only),
        "best_concept_delta": min((c["delta"] for c in hit), default=None),
        "l1_genuine_candidates": len(l1_concepts),
        "l1_concept_latents": [
            {k: v for k, v in c.items() if k != "examples"} for c in l1_hit_ft_only[:5]
        ],
        "l1_concept_latent_ft_only": bool(l1_hit_ft_only),
        "seconds": round(t2 - t0, 1),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
