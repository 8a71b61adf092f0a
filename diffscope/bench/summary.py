"""Benchmark tables, computed from the files of a benchmark folder only (never in-memory state).

`summarise(out)` reads the manifest, every run log and every grade, and gives per organism x agent
the mean score with a t-based 95% confidence interval, how many runs were scored, unscored, failed
or missing; each agent's difference from the blackbox agent per organism (Welch interval); and the
overall means (pooled over runs) and differences (averaged over organisms, interval over organisms);
and per agent and tool, how many calls were made, cited in a claim, and cited in a credited claim
(`citations`, over the organisms counted in the overall numbers).
Organisms whose behavioural check failed (the manifest's `failed_checks`) are left out of the
overall numbers, and listed with the reason, unless the benchmark was forced to include them.
The numbers come from `stats`; `render` turns them into `summary.md`, `report.html` and the
terminal table. `grade_directory(out, grader)` re-grades every run log of a folder without
running any agent, then rewrites the summary.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from diffscope.bench.citations import ToolUse, run_tool_use, tool_table
from diffscope.bench.config import FORMAT_VERSION, BenchConfig, Manifest
from diffscope.bench.grading import (
    check_grader,
    grade_job,
    read_grade,
    read_log,
    resolve_organisms,
)
from diffscope.bench.layout import (
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
from diffscope.bench.render import markdown, report_html
from diffscope.bench.stats import BASELINE, Estimate, diff_ci, mean_ci, mean_of_estimates
from diffscope.bench.truth import use_folder_organisms
from diffscope.paths import write_json, write_text

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
    tool_use: dict[str, list[int]] = Field(default_factory=dict)
    """tool -> [calls, cited in a claim, cited in a credited claim] (see `bench.citations`)."""


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


class GroupRow(BaseModel):
    """One agent over a group of organisms (trained, null or perturbation): its mean score pooled
    over the group's runs, and its difference from the baseline averaged over the group."""

    group: str
    agent: str
    organisms: int
    estimate: Estimate
    difference: Estimate | None = None


GROUPS = ("trained", "null", "perturbation")
"""Trained organisms (toy, real, a user's pair), nulls, and planted neuron edits (which a blackbox
investigator cannot see by construction, so they are reported apart)."""


def organism_group(name: str) -> str:
    """The group an organism's kind puts it in (unknown organisms count as trained)."""
    from diffscope.organisms.registry import OrganismError, get_organism

    try:
        kind = get_organism(name).kind
    except OrganismError:
        return "trained"
    return kind if kind in ("null", "perturbation") else "trained"


class BenchSummary(BaseModel):
    """The tables of a benchmark folder (what `summary.json` holds)."""

    format_version: int = FORMAT_VERSION
    generated_at: str = Field(default_factory=now_iso)
    out: str
    grader: str
    grades_dir: str
    config: BenchConfig
    excluded: dict[str, str] = Field(default_factory=dict)
    """Organisms left out of the overall numbers (their behavioural check failed), with why."""
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
    groups: list[GroupRow] = Field(default_factory=list)
    """Per group of organisms (trained, null, perturbation) and agent: mean and difference."""
    tools: list[ToolUse] = Field(default_factory=list)
    """Per agent and tool: calls, cited, cited in credited claims (the tool-to-agent gap)."""

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
    grade = None
    if record is not None and (log is None or record.get("run_id") == log.run_id):
        grade = record["grade"]
        row.graded, row.scored, row.score = True, bool(grade["scored"]), grade["score"]
        row.reason, row.grader = grade["reason"], grade["grader"]
    if log is not None:
        row.tool_use = run_tool_use(log, grade)
    return row


def summarise(out: Path, grader: str | None = None, write: bool = True) -> BenchSummary:
    """The tables of a benchmark folder, from its files; writes the summary files when `write`.

    `grader` picks the grades to read: None (or the manifest's grader) reads `grades/`, another
    name reads `grades-SLUG/`.
    """
    out = Path(out)
    manifest = read_manifest(out)
    config = manifest.config
    grader = normalize_grader(grader) if grader else config.grader
    folder = grades_dir(out, grader, config.grader)
    rows = [read_row(out, job, folder) for job in manifest_jobs(manifest)]
    summary = build_summary(out, manifest, grader, folder, rows)
    if write:
        write_summary(out, summary)
    return summary


def make_cell(organism: str, agent: str, rows: list[RunRow]) -> Cell:
    """One organism x agent from its rows."""
    mine = [r for r in rows if (r.organism, r.agent) == (organism, agent)]
    scores = [float(r.score) for r in mine if r.scored and r.score is not None]
    return Cell(
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


def build_summary(
    out: Path, manifest: Manifest, grader: str, folder: Path, rows: list[RunRow]
) -> BenchSummary:
    """Compute the tables from the rows (the overall numbers without the excluded organisms)."""
    config = manifest.config
    organisms, agents = list(config.organisms), list(config.agents)
    excluded = config.excluded()
    counted = [o for o in organisms if o not in excluded]
    cells = [make_cell(organism, agent, rows) for organism in organisms for agent in agents]
    by_key = {(c.organism, c.agent): c for c in cells}
    differences, overall_differences = [], []
    if BASELINE in agents:
        for agent in (a for a in agents if a != BASELINE):
            mine = []
            for organism in organisms:
                estimate = diff_ci(
                    by_key[organism, agent].scores, by_key[organism, BASELINE].scores
                )
                differences.append(
                    Difference(organism=organism, agent=agent, baseline=BASELINE, estimate=estimate)
                )
                if organism not in excluded:
                    mine.append(estimate)
            overall_differences.append(
                Difference(
                    organism=None,
                    agent=agent,
                    baseline=BASELINE,
                    estimate=mean_of_estimates(mine),
                )
            )
    overall = []
    for agent in agents:
        agent_cells = [by_key[o, agent] for o in counted]
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
        groups=group_rows(counted, agents, by_key),
        out=str(out),
        grader=grader,
        grades_dir=folder.relative_to(out).as_posix(),
        config=config,
        excluded=excluded,
        diffscope_version=manifest.diffscope_version,
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
        tools=tool_table((r.agent, r.tool_use) for r in rows if r.organism not in excluded),
    )


def group_rows(counted: list[str], agents: list[str], by_key: dict) -> list[GroupRow]:
    """Per group with organisms and per agent: pooled mean, and mean difference from BASELINE."""
    members: dict[str, list[str]] = {g: [] for g in GROUPS}
    for organism in counted:
        members[organism_group(organism)].append(organism)
    rows = []
    for group, names in members.items():
        if not names:
            continue
        for agent in agents:
            scores = [s for o in names for s in by_key[o, agent].scores]
            difference = None
            if BASELINE in agents and agent != BASELINE:
                difference = mean_of_estimates(
                    [diff_ci(by_key[o, agent].scores, by_key[o, BASELINE].scores) for o in names]
                )
            rows.append(
                GroupRow(
                    group=group,
                    agent=agent,
                    organisms=len(names),
                    estimate=mean_ci(scores),
                    difference=difference,
                )
            )
    return rows


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
    config = manifest.config
    name = normalize_grader(grader) if grader else config.grader
    use_folder_organisms(out)  # the user's own pairs (--truth) the folder keeps
    organisms = resolve_organisms(config.organisms)
    check_grader(name, organisms)
    folder = grades_dir(out, name, config.grader)
    with folder_lock(out):
        clean_temp_files(out)
        jobs = [job for job in manifest_jobs(manifest) if log_path(out, job).exists()]
        with JobProgress(progress, len(jobs), f"grading with {name}") as bar:
            for job in jobs:
                grade_job(job, log_path(out, job), folder, name, organisms)
                bar.advance()
        return summarise(out, name)
