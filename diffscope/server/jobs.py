"""The job tools and the status resource of a server that prepares in the background.

The SDK here (mcp 2.3) has no server side of the MCP tasks extension, so long work a client asks
for runs as a job with an id: `start_job` queues one (the mean difference at another layer, or a
crosscoder at a layer), `job_status` reports one job or all (state queued / working / completed /
failed / cancelled, share done, time left), `cancel_job` stops one at its next batch. They read
the `Preparer` only, so they answer at once and charge no budget. `diffscope://status` is the
same report as a resource: the pair, every job, the tools ready now.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from diffscope.server.prepare import Preparer, mean_diff_key
from diffscope.tools.base import ToolContext, ToolError
from diffscope.tools.common import MAX_LAYER, check_layer, model_pair
from diffscope.tools.registry import ToolDef, make_tool

STATUS_URI = "diffscope://status"
PREPARER_KEY = "server.preparer"
JobKind = Literal["mean_diff", "crosscoder"]
# which served tools make a job kind worth offering
KIND_TOOLS: dict[str, frozenset[str]] = {
    "mean_diff": frozenset({"difference_lens", "steer"}),
    "crosscoder": frozenset({"top_latents", "latent_exemplars", "steer"}),
}


class JobView(BaseModel):
    """One background job."""

    id: str
    artifact: str = Field(description="what it makes ready")
    description: str
    state: Literal["queued", "working", "completed", "failed", "cancelled"]
    fraction_done: float
    message: str = Field(description="its last progress message")
    elapsed_s: float
    eta_s: float | None = Field(description="estimated seconds left (None: no estimate yet)")
    error: str | None = None


class JobList(BaseModel):
    """Background jobs and the tools that answer at once now."""

    jobs: list[JobView]
    ready_tools: list[str]


def _preparer(ctx: ToolContext) -> Preparer:
    found = ctx.cache.get(PREPARER_KEY)
    if not isinstance(found, Preparer):
        raise ToolError("this server does not prepare in the background; it has no jobs")
    return found


def _views(preparer: Preparer, jobs: list[Any]) -> list[JobView]:
    rate = preparer.status_rate()
    return [JobView.model_validate(job.view(rate)) for job in jobs]


def start_job(
    ctx: ToolContext,
    kind: Annotated[
        JobKind,
        Field(
            description="mean_diff: the mean activation difference at a layer (for the lens and "
            "steering); crosscoder: train a crosscoder at a layer (minutes to hours)"
        ),
    ],
    layer: Annotated[
        int | None, Field(ge=0, le=MAX_LAYER, description="layer (default: the middle)")
    ] = None,
) -> JobView:
    """Start computing an artifact in the background; poll job_status with the id it returns.

    An artifact that is already computed, or being computed, returns its existing job.
    """
    preparer = _preparer(ctx)
    served = KIND_TOOLS[kind] & set(preparer.tool_names)
    if not served:
        raise ToolError(
            f"no tool of this server reads a {kind} artifact; the job would not help. Jobs here: "
            + ", ".join(k for k, tools in KIND_TOOLS.items() if tools & set(preparer.tool_names))
        )
    pair = model_pair(ctx)
    at = check_layer(pair, layer)
    key = mean_diff_key(at) if kind == "mean_diff" else f"crosscoder@{at}"
    return _views(preparer, [preparer.request(key)])[0]


def job_status(
    ctx: ToolContext,
    job_id: Annotated[
        str | None, Field(max_length=40, description="a job id (default: every job)")
    ] = None,
) -> JobList:
    """Background jobs: state (queued, working, completed, failed, cancelled), share done, time left."""
    preparer = _preparer(ctx)
    if job_id is None:
        jobs = preparer.jobs()
    else:
        job = preparer.job(job_id)
        if job is None:
            known = ", ".join(j.id for j in preparer.jobs()) or "none yet"
            raise ToolError(f"no job {job_id!r}; jobs: {known}")
        jobs = [job]
    return JobList(jobs=_views(preparer, jobs), ready_tools=preparer.ready_tools())


def cancel_job(
    ctx: ToolContext,
    job_id: Annotated[str, Field(min_length=1, max_length=40, description="the job to stop")],
) -> JobView:
    """Cancel a queued or working background job; it stops at its next batch."""
    preparer = _preparer(ctx)
    job = preparer.cancel(job_id)
    if job is None:
        known = ", ".join(j.id for j in preparer.jobs()) or "none yet"
        raise ToolError(f"no job {job_id!r}; jobs: {known}")
    return _views(preparer, [job])[0]


def job_tool_defs() -> list[ToolDef]:
    """The job tools as ToolDefs (served next to the profile's tools, never charged)."""
    return [
        make_tool(start_job, title="Start a background job", idempotent=True),
        make_tool(job_status, title="Background job status"),
        make_tool(cancel_job, title="Cancel a background job", idempotent=True),
    ]


JOB_TOOLS = frozenset({"start_job", "job_status", "cancel_job"})

# the tools that read what a job computes (a mean difference, a crosscoder): the job tools are
# served only beside one of them, so a blackbox profile gains no window on the models' internals
JOB_ARTIFACT_USERS = frozenset({"difference_lens", "steer", "top_latents", "latent_exemplars"})


def serves_jobs(tool_names: Iterable[str]) -> bool:
    """Whether a server of these tools also serves the job tools."""
    return not JOB_ARTIFACT_USERS.isdisjoint(tool_names)
