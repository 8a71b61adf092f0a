"""Benchmark tables, computed from the files of a benchmark folder only (never in-memory state).

`summarise(out)` reads the manifest, every run log and every grade, and gives per organism x agent
the mean score with a t-based 95% confidence interval, how many runs were scored, unscored, failed
or missing; each agent's difference from the blackbox agent per organism (Welch interval); and the
overall means (pooled over runs) and differences (averaged over organisms, interval over organisms).
It writes `summary.json`, `summary.md` and a self-contained `report.html` (inline CSS, the chart as
an embedded PNG, links to each run log). `grade_directory(out, grader)` re-grades every run log of
a folder without running any agent, then rewrites the summary.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from diffscope.bench.grading import (
    check_grader,
    grade_job,
    read_grade,
    read_log,
    resolve_organisms,
)
from diffscope.bench.layout import (
    FORMAT_VERSION,
    REPORT_HTML,
    SUMMARY_JSON,
    SUMMARY_MD,
    Job,
    clean_temp_files,
    folder_lock,
    grade_path,
    grades_dir,
    log_path,
    manifest_jobs,
    normalize_grader,
    now_iso,
    read_manifest,
)
from diffscope.bench.progress import JobProgress
from diffscope.paths import write_json, write_text

BASELINE = "blackbox"
CONFIDENCE = 0.95
AGENT_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
HYPOTHESIS_CHARS = 2000


# --- statistics -----------------------------------------------------------------------------


def t_quantile(df: float) -> float:
    """The two-sided 95% critical value of Student's t with `df` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.5 + CONFIDENCE / 2, df))


class Estimate(BaseModel):
    """A mean (or difference of means) with its 95% interval, or a note saying why there is none."""

    mean: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    sd: float | None = None
    n: int = 0
    note: str = ""

    @property
    def half_width(self) -> float | None:
        """Half the interval's width, when there is an interval."""
        if self.ci_low is None or self.ci_high is None:
            return None
        return (self.ci_high - self.ci_low) / 2


def mean_ci(values: Sequence[float]) -> Estimate:
    """The mean of `values` with a t-based 95% interval (none for n < 2)."""
    n = len(values)
    if n == 0:
        return Estimate(n=0, note="no scores")
    mean = sum(values) / n
    if n == 1:
        return Estimate(mean=mean, n=1, note="n=1, no CI")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile(n - 1) * sd / math.sqrt(n)
    return Estimate(mean=mean, ci_low=mean - half, ci_high=mean + half, sd=sd, n=n)


def diff_ci(values: Sequence[float], baseline: Sequence[float]) -> Estimate:
    """mean(values) - mean(baseline) with a Welch 95% interval (independent runs)."""
    a, b = mean_ci(values), mean_ci(baseline)
    if a.mean is None or b.mean is None:
        return Estimate(n=min(a.n, b.n), note="no scores on one side")
    diff = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return Estimate(mean=diff, n=min(a.n, b.n), note="n=1 on one side, no CI")
    assert a.sd is not None and b.sd is not None
    va, vb = a.sd**2 / a.n, b.sd**2 / b.n
    se = math.sqrt(va + vb)
    if se == 0:
        return Estimate(mean=diff, ci_low=diff, ci_high=diff, n=min(a.n, b.n), note="no spread")
    df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    half = t_quantile(df) * se
    return Estimate(mean=diff, ci_low=diff - half, ci_high=diff + half, n=min(a.n, b.n))


# --- the summary model ----------------------------------------------------------------------


class RunRow(BaseModel):
    """One job as its files tell it: the run's outcome and its grade."""

    job: str
    organism: str
    agent: str
    run: int
    log: str | None = None
    run_id: str | None = None
    status: str | None = None
    submitted_by: str | None = None
    stop_reason: str | None = None
    error: str | None = None
    hypothesis: str | None = None
    confidence: float | None = None
    wall_s: float | None = None
    tool_calls: int | None = None
    graded: bool = False
    scored: bool = False
    score: float | None = None
    reason: str | None = None
    grader: str | None = None


class Cell(BaseModel):
    """One organism x agent: its scores and their estimate."""

    organism: str
    agent: str
    runs: int
    scores: list[float] = Field(default_factory=list)
    scored: int = 0
    unscored: int = 0
    ungraded: int = 0
    missing: int = 0
    errors: int = 0
    estimate: Estimate = Field(default_factory=Estimate)


class Difference(BaseModel):
    """An agent's mean score minus the baseline agent's, on one organism or overall."""

    organism: str | None
    agent: str
    baseline: str
    estimate: Estimate


class Overall(BaseModel):
    """An agent's scores over every organism, pooled over runs."""

    agent: str
    estimate: Estimate
    scored: int
    unscored: int
    organisms: int


class BenchSummary(BaseModel):
    """The tables of a benchmark folder (what `summary.json` holds)."""

    format_version: int = FORMAT_VERSION
    generated_at: str = Field(default_factory=now_iso)
    out: str
    grader: str
    grades_dir: str
    config: dict[str, Any]
    diffscope_version: str | None = None
    jobs: int
    logged: int
    graded: int
    scored: int
    unscored: int
    errors: int
    missing: int
    cells: list[Cell]
    differences: list[Difference]
    overall: list[Overall]
    overall_differences: list[Difference]
    runs: list[RunRow]

    @property
    def complete(self) -> bool:
        """Whether every job has a log and a grade."""
        return self.missing == 0 and self.graded == self.jobs

    def cell(self, organism: str, agent: str) -> Cell:
        """The cell of one organism and agent."""
        for cell in self.cells:
            if (cell.organism, cell.agent) == (organism, agent):
                return cell
        raise KeyError(f"no cell for organism {organism!r} and agent {agent!r}")


# --- reading the folder ---------------------------------------------------------------------


def read_row(out: Path, job: Job, folder: Path) -> RunRow:
    """One job's row, from its log and grade files."""
    row = RunRow(job=job.id, organism=job.organism, agent=job.agent, run=job.run)
    path = log_path(out, job)
    if not path.exists():
        return row
    row.log = path.relative_to(out).as_posix()
    log, problem = read_log(path)
    if log is None:
        row.status, row.error = "error", f"the run log cannot be read: {problem}"
    else:
        row.run_id = log.run_id
        row.status, row.stop_reason, row.error = log.status, log.stop_reason, log.error
        row.wall_s, row.tool_calls = log.usage.wall_s, log.usage.tool_calls
        if log.final is not None:
            row.submitted_by = log.final.submitted_by
            row.hypothesis = str(log.final.hypothesis.get("description", ""))
            confidence = log.final.hypothesis.get("confidence")
            row.confidence = confidence if isinstance(confidence, int | float) else None
    record = read_grade(grade_path(folder, job))
    if record is not None and (log is None or record.get("run_id") == log.run_id):
        grade = record["grade"]
        row.graded, row.scored, row.score = True, bool(grade["scored"]), grade["score"]
        row.reason, row.grader = grade["reason"], grade["grader"]
    return row


def summarise(out: Path, grader: str | None = None, write: bool = True) -> BenchSummary:
    """The tables of a benchmark folder, from its files; writes the summary files when `write`.

    `grader` picks the grades to read: None (or the manifest's grader) reads `grades/`, another
    name reads `grades-SLUG/`.
    """
    out = Path(out)
    manifest = read_manifest(out)
    config = manifest["config"]
    grader = normalize_grader(grader) if grader else config["grader"]
    folder = grades_dir(out, grader, config["grader"])
    rows = [read_row(out, job, folder) for job in manifest_jobs(manifest)]
    summary = build_summary(out, manifest, grader, folder, rows)
    if write:
        write_summary(out, summary)
    return summary


def build_summary(
    out: Path, manifest: dict[str, Any], grader: str, folder: Path, rows: list[RunRow]
) -> BenchSummary:
    """Compute the tables from the rows."""
    config = manifest["config"]
    organisms, agents = list(config["organisms"]), list(config["agents"])
    cells = []
    for organism in organisms:
        for agent in agents:
            mine = [r for r in rows if (r.organism, r.agent) == (organism, agent)]
            scores = [float(r.score) for r in mine if r.scored and r.score is not None]
            cells.append(
                Cell(
                    organism=organism,
                    agent=agent,
                    runs=len(mine),
                    scores=scores,
                    scored=len(scores),
                    unscored=sum(1 for r in mine if r.graded and not r.scored),
                    ungraded=sum(1 for r in mine if r.log and not r.graded),
                    missing=sum(1 for r in mine if not r.log),
                    errors=sum(1 for r in mine if r.status == "error"),
                    estimate=mean_ci(scores),
                )
            )
    by_key = {(c.organism, c.agent): c for c in cells}
    differences, overall_differences = [], []
    if BASELINE in agents:
        for agent in (a for a in agents if a != BASELINE):
            per_organism = []
            for organism in organisms:
                estimate = diff_ci(
                    by_key[organism, agent].scores, by_key[organism, BASELINE].scores
                )
                differences.append(
                    Difference(organism=organism, agent=agent, baseline=BASELINE, estimate=estimate)
                )
                if estimate.mean is not None:
                    per_organism.append(estimate.mean)
            estimate = mean_ci(per_organism)
            if estimate.n == 0:
                estimate.note = "no organism has scores on both sides"
            elif estimate.n == 1:
                estimate.note = "1 organism, no CI"
            overall_differences.append(
                Difference(organism=None, agent=agent, baseline=BASELINE, estimate=estimate)
            )
    overall = []
    for agent in agents:
        agent_cells = [by_key[o, agent] for o in organisms]
        scores = [s for c in agent_cells for s in c.scores]
        overall.append(
            Overall(
                agent=agent,
                estimate=mean_ci(scores),
                scored=len(scores),
                unscored=sum(c.unscored for c in agent_cells),
                organisms=sum(1 for c in agent_cells if c.scores),
            )
        )
    return BenchSummary(
        out=str(out),
        grader=grader,
        grades_dir=folder.relative_to(out).as_posix(),
        config=config,
        diffscope_version=manifest.get("diffscope_version"),
        jobs=len(rows),
        logged=sum(1 for r in rows if r.log),
        graded=sum(1 for r in rows if r.graded),
        scored=sum(1 for r in rows if r.scored),
        unscored=sum(1 for r in rows if r.graded and not r.scored),
        errors=sum(1 for r in rows if r.status == "error"),
        missing=sum(1 for r in rows if not r.log),
        cells=cells,
        differences=differences,
        overall=overall,
        overall_differences=overall_differences,
        runs=rows,
    )


# --- writing --------------------------------------------------------------------------------


def fmt(value: float | None, signed: bool = False) -> str:
    """A number with two decimals ("-" for none)."""
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def describe(estimate: Estimate, signed: bool = False) -> str:
    """`mean ± half [low, high] (n=N)`, or the mean with the note saying why there is no CI."""
    if estimate.mean is None:
        return estimate.note or "-"
    text = fmt(estimate.mean, signed)
    if estimate.half_width is not None:
        text += (
            f" ± {estimate.half_width:.2f} [{fmt(estimate.ci_low, signed)}, "
            f"{fmt(estimate.ci_high, signed)}] (n={estimate.n})"
        )
        if estimate.note:
            text += f", {estimate.note}"
    else:
        text += f" ({estimate.note or f'n={estimate.n}'})"
    return text


def cell_text(cell: Cell) -> str:
    """A table cell: the estimate plus counts of unscored, missing and failed runs."""
    text = describe(cell.estimate)
    extra = []
    if cell.unscored:
        extra.append(f"{cell.unscored} unscored")
    if cell.ungraded:
        extra.append(f"{cell.ungraded} ungraded")
    if cell.missing:
        extra.append(f"{cell.missing} missing")
    if cell.errors:
        extra.append(f"{cell.errors} failed")
    return f"{text}; {', '.join(extra)}" if extra else text


def markdown(summary: BenchSummary) -> str:
    """The summary as Markdown tables."""
    config = summary.config
    agents, organisms = list(config["agents"]), list(config["organisms"])
    diff_agents = [d.agent for d in summary.overall_differences]
    lines = [
        "# diffscope benchmark",
        "",
        f"model `{config['model']}`, grader `{summary.grader}` (`{summary.grades_dir}/`), "
        f"{config['runs']} run(s) per organism x agent; scores 1-5, mean ± 95% CI (t).",
        "",
        f"jobs {summary.jobs}: {summary.logged} logged, {summary.scored} scored, "
        f"{summary.unscored} unscored, {summary.errors} failed, {summary.missing} missing.",
        "",
    ]
    header = ["organism", *agents, *(f"{a} - {BASELINE}" for a in diff_agents)]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    diffs = {(d.organism, d.agent): d for d in summary.differences}
    for organism in organisms:
        row = [organism, *(cell_text(summary.cell(organism, a)) for a in agents)]
        row += [describe(diffs[organism, a].estimate, signed=True) for a in diff_agents]
        lines.append("| " + " | ".join(md_escape(v) for v in row) + " |")
    overall = {o.agent: o for o in summary.overall}
    total = ["**overall**", *(describe(overall[a].estimate) for a in agents)]
    total += [describe(d.estimate, signed=True) for d in summary.overall_differences]
    lines.append("| " + " | ".join(md_escape(v) for v in total) + " |")
    lines += [
        "",
        "Overall: scores pooled over every scored run; differences averaged over organisms "
        "(CI over organisms). Per-organism differences use Welch intervals.",
        "",
        "## Runs",
        "",
        "| job | status | score | grade reason |",
        "|---|---|---|---|",
    ]
    for run in summary.runs:
        link = f"[{run.job}]({run.log})" if run.log else f"{run.job} (missing)"
        status = run.status or "missing"
        if run.submitted_by:
            status += f", {run.submitted_by}"
        score = fmt(run.score) if run.scored else ("unscored" if run.graded else "-")
        lines.append(
            "| "
            + " | ".join(md_escape(v) for v in (link, status, score, run.reason or run.error or ""))
            + " |"
        )
    return "\n".join(lines) + "\n"


def md_escape(text: str) -> str:
    """Make text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def chart_png(summary: BenchSummary) -> bytes:
    """A grouped bar chart of mean scores (with 95% CIs) per organism and agent, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    organisms = list(summary.config["organisms"])
    agents = list(summary.config["agents"])
    fig = Figure(figsize=(10, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(agents), 1)
    for index, agent in enumerate(agents):
        xs, heights, lows, highs = [], [], [], []
        for position, organism in enumerate(organisms):
            estimate = summary.cell(organism, agent).estimate
            if estimate.mean is None:
                continue
            xs.append(position - 0.4 + width * (index + 0.5))
            heights.append(estimate.mean)
            if estimate.ci_low is None or estimate.ci_high is None:
                lows.append(0.0)
                highs.append(0.0)
            else:
                lows.append(estimate.mean - estimate.ci_low)
                highs.append(estimate.ci_high - estimate.mean)
        ax.bar(
            xs,
            heights,
            width * 0.95,
            yerr=[lows, highs] if xs else None,
            capsize=3,
            label=agent,
            color=AGENT_COLOURS[index % len(AGENT_COLOURS)],
        )
    if summary.scored == 0:
        ax.text(0.5, 0.5, "no scores yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks(range(len(organisms)))
    ax.set_xticklabels(organisms, rotation=20 if len(organisms) > 6 else 0, ha="right")
    pad = max(0.0, (3 - len(organisms)) * 0.5)  # keep bars narrow for one or two organisms
    ax.set_xlim(-0.6 - pad, len(organisms) - 0.4 + pad)
    ax.set_ylim(0, 5.2)
    ax.set_ylabel(f"score (1-5), mean ± 95% CI, grader {summary.grader}")
    ax.legend(loc="upper right", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto;
       max-width: 1120px; color: #222; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 4px; }
h2 { font-size: 1.2em; margin-top: 28px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #555; font-size: 0.92em; }
img.chart { width: 100%; max-width: 1000px; display: block; margin: 12px 0; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: #f3f4f6; }
tr.total td { font-weight: 600; background: #fafafa; }
.ok { color: #176f2c; } .budget { color: #8a5a00; } .error { color: #b3261e; }
.muted { color: #777; } .swatch { display: inline-block; width: 10px; height: 10px;
  margin-right: 6px; border-radius: 2px; }
details summary { cursor: pointer; color: #1f4e8c; }
pre { white-space: pre-wrap; background: #f7f7f9; padding: 8px; margin: 6px 0; }
"""


def report_html(summary: BenchSummary) -> str:
    """A self-contained HTML report: settings, chart, tables and one row per run."""
    esc = html.escape
    config = summary.config
    agents, organisms = list(config["agents"]), list(config["organisms"])
    diff_agents = [d.agent for d in summary.overall_differences]
    diffs = {(d.organism, d.agent): d for d in summary.differences}
    chart = base64.b64encode(chart_png(summary)).decode("ascii")
    colour = {a: AGENT_COLOURS[i % len(AGENT_COLOURS)] for i, a in enumerate(agents)}

    def agent_head(agent: str) -> str:
        return (
            f'<th><span class="swatch" style="background:{colour[agent]}"></span>{esc(agent)}</th>'
        )

    head = "".join(agent_head(a) for a in agents)
    head += "".join(f"<th>{esc(a)} &minus; {BASELINE}</th>" for a in diff_agents)
    body = []
    for organism in organisms:
        cells = "".join(f"<td>{esc(cell_text(summary.cell(organism, a)))}</td>" for a in agents)
        cells += "".join(
            f"<td>{esc(describe(diffs[organism, a].estimate, signed=True))}</td>"
            for a in diff_agents
        )
        body.append(f"<tr><td>{esc(organism)}</td>{cells}</tr>")
    overall = {o.agent: o for o in summary.overall}
    cells = "".join(f"<td>{esc(describe(overall[a].estimate))}</td>" for a in agents)
    cells += "".join(
        f"<td>{esc(describe(d.estimate, signed=True))}</td>" for d in summary.overall_differences
    )
    body.append(f'<tr class="total"><td>overall</td>{cells}</tr>')

    run_rows = []
    for run in summary.runs:
        if run.log:
            name = f'<a href="{esc(run.log, quote=True)}">{esc(run.job)}</a>'
        else:
            name = f'{esc(run.job)} <span class="muted">(not run)</span>'
        status = run.status or "missing"
        status_html = f'<span class="{esc(status)}">{esc(status)}</span>'
        if run.submitted_by:
            status_html += f" ({esc(run.submitted_by)})"
        score = fmt(run.score) if run.scored else ("unscored" if run.graded else "-")
        detail = []
        if run.hypothesis is not None:
            text = run.hypothesis[:HYPOTHESIS_CHARS] or "(empty)"
            confidence = "" if run.confidence is None else f", confidence {run.confidence:g}"
            detail.append(
                f"<details><summary>hypothesis{esc(confidence)}</summary>"
                f"<pre>{esc(text)}</pre></details>"
            )
        if run.error:
            detail.append(f'<div class="error">{esc(run.error)}</div>')
        run_rows.append(
            f"<tr><td>{name}</td><td>{status_html}</td><td>{score}</td>"
            f"<td>{esc(run.reason or '')}{''.join(detail)}</td></tr>"
        )

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>diffscope benchmark: {esc(config["model"])}</title>
<style>{CSS}</style></head>
<body>
<h1>diffscope benchmark</h1>
<p class="meta">model <b>{esc(config["model"])}</b> &middot; grader <b>{esc(summary.grader)}</b>
({esc(summary.grades_dir)}/) &middot; {config["runs"]} run(s) per organism &times; agent &middot;
agents {esc(", ".join(agents))} &middot; diffscope {esc(summary.diffscope_version or "?")}
&middot; generated {esc(summary.generated_at)}</p>
<p class="meta">jobs {summary.jobs}: {summary.logged} logged, {summary.scored} scored,
{summary.unscored} unscored, {summary.errors} failed, {summary.missing} missing.
Scores are 1-5; cells show mean &plusmn; 95% CI (t) [low, high] (n).</p>
<img class="chart" alt="mean score per organism and agent" src="data:image/png;base64,{chart}">
<h2>Scores by organism</h2>
<table><tr><th>organism</th>{head}</tr>
{"".join(body)}
</table>
<p class="meta">Overall: scores pooled over every scored run; differences are averaged over
organisms with a CI over organisms. Per-organism differences use Welch intervals.</p>
<h2>Runs</h2>
<table><tr><th>run log</th><th>status</th><th>score</th><th>grade reason / hypothesis</th></tr>
{"".join(run_rows)}
</table>
</body></html>
"""


def write_summary(out: Path, summary: BenchSummary) -> None:
    """Write summary.json, summary.md and report.html atomically."""
    out = Path(out)
    write_json(out / SUMMARY_JSON, summary.model_dump(mode="json"))
    write_text(out / SUMMARY_MD, markdown(summary))
    write_text(out / REPORT_HTML, report_html(summary))


# --- re-grading -----------------------------------------------------------------------------


def grade_directory(out: Path, grader: str | None = None, progress: bool = True) -> BenchSummary:
    """Re-grade every run log of a benchmark folder (no agent runs), then rewrite the summary.

    Grades by the manifest's grader go to `grades/`; any other grader's go to `grades-SLUG/`,
    and the summary is then computed from those. ValueError for a folder that is not a
    benchmark, an organism this install does not know, or an unusable grader.
    """
    out = Path(out)
    manifest = read_manifest(out)
    config = manifest["config"]
    name = normalize_grader(grader) if grader else config["grader"]
    organisms = resolve_organisms(config["organisms"])
    check_grader(name, organisms)
    folder = grades_dir(out, name, config["grader"])
    with folder_lock(out):
        clean_temp_files(out)
        jobs = [job for job in manifest_jobs(manifest) if log_path(out, job).exists()]
        with JobProgress(progress, len(jobs), f"grading with {name}") as bar:
            for job in jobs:
                grade_job(job, log_path(out, job), folder, name, organisms)
                bar.advance()
        return summarise(out, name)
