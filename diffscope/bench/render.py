"""Rendering a benchmark summary: Markdown for files, a self-contained HTML report, and a rich
table for the terminal. Pure presentation over a `BenchSummary`; every number comes from `stats`
and is rounded here, once (means from their exact fractions).
"""

from __future__ import annotations

import base64
import html
import io
from fractions import Fraction
from typing import TYPE_CHECKING

from diffscope.bench.stats import BASELINE, Estimate, exact_round

if TYPE_CHECKING:
    from rich.table import Table

    from diffscope.bench.summary import BenchSummary, Cell

AGENT_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
HYPOTHESIS_CHARS = 2000


def fmt(value: float | Fraction | None, signed: bool = False) -> str:
    """A number with two decimals ("-" for none); a fraction is rounded exactly, once."""
    if value is None:
        return "-"
    if isinstance(value, Fraction):
        rounded = exact_round(value)
        sign = "-" if rounded < 0 else ("+" if signed else "")
        cents = abs(rounded.numerator * 100 // rounded.denominator)
        return f"{sign}{cents // 100}.{cents % 100:02d}"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def describe(estimate: Estimate, signed: bool = False) -> str:
    """`mean ± half [low, high] (n=N)`, or the mean with the note saying why there is no CI."""
    if estimate.mean is None:
        return estimate.note or "-"
    text = fmt(estimate.fraction, signed)
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


def organism_label(summary: BenchSummary, organism: str) -> str:
    """The organism's name, marked when its behavioural check failed."""
    if organism in summary.excluded:
        return f"{organism} (check failed, not averaged)"
    if organism in summary.config.failed_checks:
        return f"{organism} (check failed, included)"
    return organism


def check_notes(summary: BenchSummary) -> list[str]:
    """One line per organism whose behavioural check failed, saying why and what was done."""
    notes = []
    for organism, reason in summary.config.failed_checks.items():
        if organism not in summary.config.organisms:
            continue
        done = (
            "left out of the overall numbers"
            if organism in summary.excluded
            else ("included anyway (--include-failed)")
        )
        notes.append(f"{organism}: behavioural check failed ({reason}); {done}")
    return notes


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
    agents, organisms = list(config.agents), list(config.organisms)
    diff_agents = [d.agent for d in summary.overall_differences]
    lines = [
        "# diffscope benchmark",
        "",
        f"model `{config.model}`, grader `{summary.grader}` (`{summary.grades_dir}/`), "
        f"{config.runs} run(s) per organism x agent; scores 1-5, mean ± 95% CI (t).",
        "",
        f"jobs {summary.jobs}: {summary.logged} logged, {summary.scored} scored, "
        f"{summary.unscored} unscored, {summary.errors} failed, {summary.missing} missing.",
        "",
    ]
    header = ["organism", *agents, *(f"{a} - {BASELINE}" for a in diff_agents)]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    diffs = {(d.organism, d.agent): d for d in summary.differences}
    for organism in organisms:
        row = [organism_label(summary, organism)]
        row += [cell_text(summary.cell(organism, a)) for a in agents]
        row += [describe(diffs[organism, a].estimate, signed=True) for a in diff_agents]
        lines.append("| " + " | ".join(md_escape(v) for v in row) + " |")
    overall = {o.agent: o for o in summary.overall}
    total = ["**overall**", *(describe(overall[a].estimate) for a in agents)]
    total += [describe(d.estimate, signed=True) for d in summary.overall_differences]
    lines.append("| " + " | ".join(md_escape(v) for v in total) + " |")
    for row in group_table(summary, agents, diff_agents):
        lines.append("| " + " | ".join(md_escape(v) for v in row) + " |")
    lines += [
        "",
        "Overall: scores pooled over every scored run; differences averaged over organisms "
        "(CI over organisms). Per-organism differences use Welch intervals. The group rows split "
        "the overall numbers into trained organisms, nulls and neuron perturbations.",
        "",
    ]
    notes = check_notes(summary)
    if notes:
        lines += ["## Organisms whose check failed", "", *(f"- {n}" for n in notes), ""]
    if summary.tools:
        lines += ["## Tools cited in claims", "", TOOLS_NOTE, ""]
        lines += ["| " + " | ".join(TOOL_HEADER) + " |", "|" + "---|" * len(TOOL_HEADER)]
        lines += ["| " + " | ".join(md_escape(v) for v in row) + " |" for row in tool_rows(summary)]
        lines.append("")
    lines += [
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


TOOL_HEADER = ("agent", "tool", "calls", "cited", "cited in credited claims", "credited share")
TOOLS_NOTE = (
    "Per tool: calls made, calls whose output a claim of the final hypothesis cites, and calls "
    "cited in a claim the grader credited (the tool-to-agent gap), over the counted organisms."
)


def tool_rows(summary: BenchSummary) -> list[list[str]]:
    """The per-tool citation table as text cells."""
    rows = []
    for use in summary.tools:
        share = use.credited_share
        rows.append(
            [
                use.agent,
                use.tool,
                str(use.calls),
                str(use.cited),
                str(use.credited),
                "-" if share is None else f"{100 * share:.0f}%",
            ]
        )
    return rows


def md_escape(text: str) -> str:
    """Make text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def chart_png(summary: BenchSummary) -> bytes:
    """A grouped bar chart of mean scores (with 95% CIs) per organism and agent, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    organisms = list(summary.config.organisms)
    agents = list(summary.config.agents)
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
    agents, organisms = list(config.agents), list(config.organisms)
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
        body.append(f"<tr><td>{esc(organism_label(summary, organism))}</td>{cells}</tr>")
    overall = {o.agent: o for o in summary.overall}
    cells = "".join(f"<td>{esc(describe(overall[a].estimate))}</td>" for a in agents)
    cells += "".join(
        f"<td>{esc(describe(d.estimate, signed=True))}</td>" for d in summary.overall_differences
    )
    body.append(f'<tr class="total"><td>overall</td>{cells}</tr>')
    for row in group_table(summary, agents, diff_agents):
        body.append("<tr>" + "".join(f"<td><em>{esc(v)}</em></td>" for v in row) + "</tr>")

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

    notes = "".join(f"<li>{esc(n)}</li>" for n in check_notes(summary))
    if notes:
        notes = f"<h2>Organisms whose check failed</h2><ul>{notes}</ul>\n"
    if summary.tools:
        head_cells = "".join(f"<th>{esc(h)}</th>" for h in TOOL_HEADER)
        tool_body = "".join(
            "<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>"
            for row in tool_rows(summary)
        )
        notes += (
            f'<h2>Tools cited in claims</h2><p class="meta">{esc(TOOLS_NOTE)}</p>'
            f"<table><tr>{head_cells}</tr>{tool_body}</table>\n"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>diffscope benchmark: {esc(config.model)}</title>
<style>{CSS}</style></head>
<body>
<h1>diffscope benchmark</h1>
<p class="meta">model <b>{esc(config.model)}</b> &middot; grader <b>{esc(summary.grader)}</b>
({esc(summary.grades_dir)}/) &middot; {config.runs} run(s) per organism &times; agent &middot;
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
{notes}<h2>Runs</h2>
<table><tr><th>run log</th><th>status</th><th>score</th><th>grade reason / hypothesis</th></tr>
{"".join(run_rows)}
</table>
</body></html>
"""


def terminal_table(summary: BenchSummary) -> Table:
    """The scores table (organism x agent, differences, overall) as a rich table."""
    from rich.table import Table

    config = summary.config
    agents, organisms = list(config.agents), list(config.organisms)
    diff_agents = [d.agent for d in summary.overall_differences]
    diffs = {(d.organism, d.agent): d for d in summary.differences}
    table = Table(
        title=f"diffscope benchmark: model {config.model}, grader {summary.grader}",
        caption="scores 1-5, mean ± 95% CI (t); overall differences averaged over organisms",
    )
    table.add_column("organism")
    for agent in agents:
        table.add_column(agent)
    for agent in diff_agents:
        table.add_column(f"{agent} - {BASELINE}")
    for organism in organisms:
        row = [organism_label(summary, organism)]
        row += [cell_text(summary.cell(organism, a)) for a in agents]
        row += [describe(diffs[organism, a].estimate, signed=True) for a in diff_agents]
        style = "dim" if organism in summary.excluded else None
        table.add_row(*row, style=style)
    overall = {o.agent: o for o in summary.overall}
    total = ["overall", *(describe(overall[a].estimate) for a in agents)]
    total += [describe(d.estimate, signed=True) for d in summary.overall_differences]
    table.add_row(*total, style="bold", end_section=True)
    for row in group_table(summary, agents, diff_agents):
        table.add_row(*row, style="italic")
    return table


def group_table(
    summary: BenchSummary, agents: list[str], diff_agents: list[str]
) -> list[list[str]]:
    """One row per group of organisms (trained, null, perturbation): means and differences."""
    rows = []
    for group in dict.fromkeys(g.group for g in summary.groups):
        cells = {g.agent: g for g in summary.groups if g.group == group}
        count = next(iter(cells.values())).organisms
        row = [f"{group} ({count})", *(describe(cells[a].estimate) for a in agents if a in cells)]
        for agent in diff_agents:
            difference = cells[agent].difference if agent in cells else None
            row.append(describe(difference, signed=True) if difference else "-")
        rows.append(row)
    return rows
