"""The difference report: runs the engine's primitives on one pair with sensible budgets and writes
a JSON report and a self-contained HTML page (plots embedded as PNG images)."""

from __future__ import annotations

import base64
import html
import io
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from diffscope.diffing.artifacts import Artifacts
from diffscope.paths import write_json, write_text

Progress = Callable[[float, str], None]


class ReportConfig(BaseModel):
    """Budgets of a difference report."""

    model_config = ConfigDict(extra="forbid")

    top_neurons: int = Field(20, ge=1, le=200)
    exemplars: int = Field(3, ge=0, le=16)
    clusters_from: int = Field(48, ge=2, le=512)
    kl_windows: int = Field(64, ge=1)
    kl_positions: int = Field(12, ge=1, le=100)
    promoted: int = Field(30, ge=1, le=200)
    lens_tokens: int = Field(12, ge=1, le=50)
    # the summary (diffscope.diffing.report_summary)
    summary_words: int = Field(10, ge=1, le=50, description="whole words listed")
    summary_candidates: int = Field(
        120, ge=1, le=1000, description="tokens by mass shift turned into whole words"
    )
    summary_contexts: int = Field(3, ge=0, le=12, description="high-KL contexts listed")
    summary_clusters: int = Field(3, ge=0, le=12, description="neuron clusters listed")
    evidence_windows: int = Field(
        256, ge=1, description="probe windows indexed to merge word pieces into whole words"
    )
    common_word_share: float = Field(
        0.3, gt=0, le=1, description="words in more of the evidence windows are function words"
    )
    min_mass_shift: float = Field(0.05, ge=0, description="smallest mass shift a word may have")
    amplify_prompts: int = Field(2, ge=0, le=8, description="amplified samples (0: none)")
    amplify_tokens: int = Field(24, ge=1, le=64, description="tokens per amplified sample")
    amplify_alpha: float = Field(
        1.0, ge=0, le=20, description="alpha of the samples (1 exaggerates without derailing)"
    )
    amplify_temperature: float = Field(0.7, ge=0, le=2)
    prompt_tokens: int = Field(8, ge=1, le=32, description="tokens of each sample's prompt")
    context_tokens: int = Field(
        6, ge=1, le=32, description="tokens of each model's continuation of a top KL context"
    )
    seed: int = 0
    noise_kl: float = Field(
        1e-4, ge=0, description="per-token KL (nats) at or below which nothing changed"
    )
    noise_logit: float = Field(
        1e-3, ge=0, description="mean logit difference at or below which nothing changed"
    )


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(report: dict[str, Any], profile, kl_values: torch.Tensor) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: dict[str, str] = {}
    rms = profile.metrics["total"]["rms"]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.boxplot([rms[layer].numpy() for layer in range(rms.shape[0])], showfliers=True)
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xticks(range(1, rms.shape[0] + 1), [str(i) for i in range(rms.shape[0])])
    ax.set_xlabel("layer")
    ax.set_ylabel("normalised RMS gap")
    ax.set_title("Gap distribution per layer (every MLP neuron)")
    plots["gap_per_layer"] = _png(fig)

    top = report["top_neurons"][:20]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.bar(range(len(top)), [n["rms"] for n in top], color="#3b7dd8")
    ax.set_xticks(
        range(len(top)), [f"L{n['layer']}N{n['neuron']}" for n in top], rotation=70, fontsize=7
    )
    ax.set_ylabel("normalised RMS gap")
    ax.set_title("Top neurons by gap")
    plots["top_neurons"] = _png(fig)

    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.plot(kl_values.numpy(), color="#c0392b", lw=0.8)
    ax.set_xlabel("token (concatenated probe windows)")
    ax.set_ylabel("KL(ft || base)")
    ax.set_title("Per-token KL on the probe corpus")
    plots["kl_per_token"] = _png(fig)

    promoted = report["promoted_tokens"][:20]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.barh(range(len(promoted))[::-1], [t["occurrence"] for t in promoted], color="#27ae60")
    ax.set_yticks(range(len(promoted))[::-1], [repr(t["token"]) for t in promoted], fontsize=7)
    ax.set_xlabel("share of positions where the token is among the top promoted")
    ax.set_title("Tokens the fine-tune promotes")
    plots["promoted_tokens"] = _png(fig)

    clusters = report["clusters"]
    if clusters:
        fig, ax = plt.subplots(figsize=(7, 2.6))
        ax.bar(range(len(clusters)), [len(c["neurons"]) for c in clusters], color="#8e44ad")
        ax.set_xticks(
            range(len(clusters)), [c["label"][:18] for c in clusters], rotation=30, fontsize=7
        )
        ax.set_ylabel("neurons")
        ax.set_title("Neuron clusters (label: shared peak tokens)")
        plots["clusters"] = _png(fig)
    return plots


def build_report(
    artifacts: Artifacts, config: ReportConfig | None = None, progress: Progress | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """Compute the report's content (JSON-friendly) and its plots (base64 PNG by name)."""
    from diffscope.diffing.kl import kl_per_token, kl_probe
    from diffscope.diffing.lens import logit_lens
    from diffscope.diffing.report_summary import build_summary

    cfg = config or ReportConfig()
    pair = artifacts.pair
    say = progress or (lambda _f, _m: None)
    start = time.time()
    say(0.0, "neuron profile")
    profile = artifacts.neuron_profile()
    top = []
    for stat in profile.top(cfg.top_neurons, "rms", "total"):
        row = {
            k: getattr(stat, k)
            for k in ("layer", "neuron", "rank", "rms", "mean", "tail", "decorrelation", "output")
        }
        row["intrinsic_rms"] = (
            float(profile.metrics["intrinsic"]["rms"][stat.layer, stat.neuron])
            if "intrinsic" in profile.metrics
            else None
        )
        row["exemplars"] = [
            {
                "text": e.text,
                "token": e.token,
                "gap": e.value,
                "base_activation": e.base_activation,
                "finetuned_activation": e.finetuned_activation,
            }
            for e in profile.exemplars(stat.layer, stat.neuron, pair.tokenizer, cfg.exemplars)
        ]
        top.append(row)
    say(0.35, "neuron clusters")
    clusters = [c.__dict__ for c in artifacts.clusters(top=cfg.clusters_from)]
    say(0.5, "KL probe")
    windows = artifacts.windows()[: cfg.kl_windows]
    kl = kl_probe(pair, windows, k=cfg.kl_positions)
    kl_values = kl_per_token(pair, pair.batch_from_ids(windows[: min(8, len(windows))]))[:, 1:]
    say(0.65, "logit-diff mining")
    mining = artifacts.diff_mining()
    say(0.85, "activation-difference lens")
    layer = pair.n_layers // 2
    diff = artifacts.mean_diff(layer)
    lens = [
        logit_lens(pair, diff[pos], k=cfg.lens_tokens).model_dump()
        for pos in range(diff.shape[0])
        if torch.isfinite(diff[pos]).all()
    ]
    report: dict[str, Any] = {
        "pair": {
            "name": pair.name,
            "fingerprint": pair.fingerprint(),
            "layers": pair.n_layers,
            "neurons_per_layer": pair.n_neurons,
            "d_model": pair.d_model,
            "family": pair.family.name,
        },
        "corpus": artifacts.corpus.model_dump(),
        "profiled_tokens": profile.n_tokens,
        "gap_summary": {
            f"layer_{i}": {
                "median_rms": float(profile.metrics["total"]["rms"][i].median()),
                "max_rms": float(profile.metrics["total"]["rms"][i].max()),
            }
            for i in range(profile.n_layers)
        },
        "top_neurons": top,
        "clusters": clusters,
        "kl": kl.model_dump(),
        "promoted_tokens": [t.model_dump() for t in mining.promoted[: cfg.promoted]],
        "promoted_by_mass_shift": [
            t.model_dump() for t in mining.ranked(pair, "mass_shift", cfg.promoted)
        ],
        "demoted_tokens": [t.model_dump() for t in mining.demoted[: cfg.promoted]],
        "topics": [t.model_dump() for t in mining.topics],
        "difference_lens": {"layer": layer, "positions": lens},
    }
    say(0.9, "summary")
    max_gap = float(profile.metrics["total"]["rms"].max())
    summary = build_summary(pair, artifacts.windows(), kl, mining, clusters, max_gap, cfg)
    report = {"format_version": 2, "summary": summary.model_dump(), **report}
    plots = _plots(report, profile, kl_values.reshape(-1))
    report["seconds"] = round(time.time() - start, 1)
    say(1.0, "done")
    return report, plots


def _table(rows: list[list[str]], head: list[str]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _marked(text: str) -> str:
    return html.escape(text).replace("[[", "<mark>").replace("]]", "</mark>")


HOW_TO_READ = {
    "gaps": "How to read: each box is one layer's neurons; a neuron high above its box fires "
    "differently in the fine-tune (normalised RMS gap, 0 = unchanged). The table gives the top "
    "neurons with the texts where the gap peaks (marked token): shared themes there are clues.",
    "clusters": "How to read: neurons whose gaps rise and fall together form a cluster; its label "
    "and shared tokens are the tokens where its members peak. A cluster labelled with words of "
    "one theme points to what changed; clusters of punctuation or pieces are usually noise.",
    "kl": "How to read: KL(ft || base) in nats says how differently the two models predict the "
    "next token (0 = the same). Spikes in the plot are the positions listed below: read the "
    "context and the tokens the fine-tune raised to see what it expects instead.",
    "promoted": "How to read: the first table ranks tokens by how much more the fine-tune "
    "predicts them over the whole corpus (mass shift, ×: how many times as often); it surfaces "
    "topic words. The plot and second table rank by how often a token is among a position's "
    "largest logit increases, which favours common words and word pieces.",
    "topics": "How to read: each topic is a group of tokens the fine-tune raises together at "
    "the same positions (NMF); a topic made of words of one theme is a strong clue.",
    "lens": "How to read: the mean activation difference (fine-tune minus base) at early "
    "positions, read through the unembedding: + tokens are what the difference pushes towards, "
    "− tokens what it pushes away from. Mostly useful for strong, narrow fine-tunes.",
}


def _how(section: str) -> str:
    return f'<p class="how">{html.escape(HOW_TO_READ[section])}</p>'


def render_html(report: dict[str, Any], plots: dict[str, str]) -> str:
    """A self-contained page: inline CSS, the summary first, plots as data-URI PNGs, tables of
    the findings, and one line under each heading on how to read it."""
    from diffscope.diffing.report_summary import render_summary

    esc = html.escape
    img = {k: f'<img alt="{k}" src="data:image/png;base64,{v}">' for k, v in plots.items()}
    neurons = _table(
        [
            [
                f"L{n['layer']}N{n['neuron']}",
                f"{n['rms']:.3f}",
                f"{n['mean']:+.3f}",
                f"{n['tail']:.3f}",
                f"{n['decorrelation']:.3f}",
                "<br>".join(_marked(e["text"]) for e in n["exemplars"]),
            ]
            for n in report["top_neurons"]
        ],
        ["neuron", "rms", "mean", "tail", "decorr.", "exemplars (peak token marked)"],
    )
    clusters = _table(
        [
            [
                str(c["index"]),
                esc(c["label"]),
                str(len(c["neurons"])),
                esc(", ".join(t for t, _ in c["shared_tokens"])),
                "<br>".join(_marked(x) for x in c["peak_contexts"]),
            ]
            for c in report["clusters"]
        ],
        ["#", "label", "neurons", "shared tokens", "peak contexts"],
    )
    kl = report["kl"]
    kl_rows = _table(
        [
            [
                f"{p['kl']:.3f}",
                esc(p["context"]) + " <mark>" + esc(p.get("next_token") or "") + "</mark>",
                esc(", ".join(t["token"] for t in p["up"])),
            ]
            for p in kl["top"]
        ],
        ["KL", "context → next token", "tokens the fine-tune raised"],
    )
    promoted = _table(
        [
            [
                esc(repr(t["token"])),
                f"{t['occurrence']:.3f}",
                f"{t['frac_positive']:.2f}",
                f"{t['mean_diff']:+.2f}",
            ]
            for t in report["promoted_tokens"]
        ],
        ["token", "top-K occurrence", "frac. positive", "mean logit diff"],
    )
    by_mass = _table(
        [
            [
                esc(repr(t["token"])),
                f"{t['mass_shift']:+.2f} (×{math.exp(t['mass_shift']):.1f})",
                f"{t['mean_diff']:+.2f}",
            ]
            for t in report["promoted_by_mass_shift"]
        ],
        ["token", "mass shift", "mean logit diff"],
    )
    topics = "".join(
        f"<li>topic {t['index']} (weight {t['weight']:.2f}): "
        f"{esc(', '.join(x['token'] for x in t['tokens'][:10]))}</li>"
        for t in report["topics"]
    )
    lens = "".join(
        f"<li>position {i}: + {esc(', '.join(t['token'] for t in p['positive'][:8]))} | − "
        f"{esc(', '.join(t['token'] for t in p['negative'][:8]))}</li>"
        for i, p in enumerate(report["difference_lens"]["positions"])
    )
    pair = report["pair"]
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>diffscope report: {esc(pair["name"])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:13px;margin:1em 0}}td,th{{border:1px solid #ccc;
padding:4px 6px;vertical-align:top}}th{{background:#f3f3f3}}mark{{background:#ffe08a}}
img{{max-width:100%;margin:0.5em 0}}h2{{border-bottom:1px solid #ddd;padding-bottom:4px}}
.how{{color:#555;font-style:italic;font-size:14px}}#summary{{background:#f6f9fe;
border:1px solid #c9d8ef;padding:0.2em 1.2em 0.6em;font-size:16px;line-height:1.45}}</style>
</head><body>
<h1>What did this fine-tune change?</h1>
<p>Pair <b>{esc(pair["name"])}</b> ({esc(pair["family"])}, {pair["layers"]} layers ×
{pair["neurons_per_layer"]} MLP neurons), fingerprint <code>{esc(pair["fingerprint"])}</code>;
{report["profiled_tokens"]} tokens profiled. Report built in {report["seconds"]} s.</p>
{render_summary(report["summary"])}
<h2>Neuron gaps</h2>{_how("gaps")}{img.get("gap_per_layer", "")}{img.get("top_neurons", "")}
{neurons}
<h2>Neuron clusters</h2>{_how("clusters")}{img.get("clusters", "")}{clusters}
<h2>Per-token KL</h2>{_how("kl")}<p>mean {kl["mean"]:.4f}, median {kl["median"]:.4f}, max
{kl["max"]:.3f} over {kl["n_tokens"]} tokens.</p>{img.get("kl_per_token", "")}{kl_rows}
<h2>Promoted tokens</h2>{_how("promoted")}<h3>By mass shift</h3>{by_mass}
<h3>By top-K occurrence</h3>{img.get("promoted_tokens", "")}{promoted}
<h3>NMF topics</h3>{_how("topics")}<ul>{topics}</ul>
<h2>Activation-difference lens (layer {report["difference_lens"]["layer"]})</h2>{_how("lens")}
<ul>{lens}</ul>
</body></html>"""


def write_report(
    artifacts: Artifacts,
    json_out: Path | None,
    html_out: Path | None,
    config: ReportConfig | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Build the report and write whichever outputs were asked for (atomically)."""
    report, plots = build_report(artifacts, config, progress)
    if json_out is not None:
        write_json(json_out, report)
    if html_out is not None:
        write_text(html_out, render_html(report, plots))
    return report
