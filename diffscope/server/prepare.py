"""Background preparation: the artifacts a profile's tools need, computed while the server answers.

A `Preparer` owns one daemon thread that runs `Job`s in order: at start it queues what the served
profile needs (the probe corpus windows, the default KL probe's answer, the mean difference at
the middle layer, the diff mining, the neuron profile: cheapest first, so more tools become ready
sooner); a call that needs another artifact (a lens at another layer) queues it, and so can a
client through the job tools (`start_job`, `job_status`, `cancel_job` in `diffscope.server.jobs`).
With the artifacts already cached (`diffscope prepare`) every job only loads its file, so
everything is ready at once.

A tool whose artifact is not ready answers a `Preparing` result within `wait_s` seconds (what is
being computed, the share done, an estimate of the time left, which tools are ready now) instead
of blocking past the client's timeout. Jobs hold the model lock but hand it to any waiting call
between batches (`ModelLock.yield_to_waiters`), and stop at the next batch when cancelled.
Progress goes to stderr (the log) every `log_every_s` seconds and into the status resource.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from diffscope import progress as pg
from diffscope.tools.base import ToolContext
from diffscope.tools.common import artifacts, model_pair
from diffscope.tools.kl import is_default_corpus_call, prepare_default_probe

log = logging.getLogger("diffscope.server.prepare")

JobState = Literal["queued", "working", "completed", "failed", "cancelled"]
DEFAULT_WAIT_S = 3.0
LOAD_JOB = "the model pair"
# what each default artifact costs relative to the others (for the time-left estimate of jobs
# that have not started yet): measured on the toy zoo, neurons ~ 2x mining ~ 10x mean diff
WEIGHTS = {
    "windows": 0.05,
    "kl_probe": 0.1,
    "mean_diff": 0.2,
    "diff_mining": 1.0,
    "neuron_profile": 2.0,
    "crosscoder": 20.0,
}
MEAN_DIFF_POSITIONS = 5  # what the lens and steering tools read (their POSITIONS)
CROSSCODER_TOOLS = ("top_latents", "latent_exemplars")
NEURON_TOOLS = ("top_neurons", "neuron_exemplars", "neuron_clusters")


class Preparing(BaseModel):
    """A tool's answer while an artifact it needs is still being computed in the background."""

    status: Literal["preparing"] = "preparing"
    tool: str = Field(description="the tool that was called")
    waiting_for: str = Field(description="the artifact this call needs")
    computing_now: str | None = Field(description="what the server is computing right now")
    fraction_done: float = Field(description="share of `waiting_for` computed so far (0..1)")
    eta_s: float | None = Field(
        description="estimated seconds until `waiting_for` is ready (None: no estimate yet)"
    )
    retry_after_s: float = Field(description="when calling again is worth it")
    ready_tools: list[str] = Field(description="tools that answer at once now")
    message: str = Field(description="what to do")


@dataclass
class Job:
    """One background computation: its name, the artifact key it makes ready, and its state."""

    id: str
    key: str
    description: str
    run: Callable[[], Any]
    weight: float = 1.0
    state: JobState = "queued"
    fraction: float = 0.0
    message: str = ""
    error: str | None = None
    created: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def done(self) -> bool:
        return self.state in ("completed", "failed", "cancelled")

    def eta_s(self, rate: float | None) -> float | None:
        """Seconds left: from this job's own pace once it has some, else from `rate` (seconds
        per unit of weight measured on finished jobs)."""
        if self.done:
            return 0.0
        if self.state == "working" and self.started is not None and self.fraction >= 0.02:
            elapsed = time.monotonic() - self.started
            return round(elapsed / self.fraction * (1.0 - self.fraction), 1)
        return None if rate is None else round(rate * self.weight * (1.0 - self.fraction), 1)

    def view(self, rate: float | None = None) -> dict[str, Any]:
        """The job as the status resource and `job_status` show it."""
        now = time.monotonic()
        began = self.started if self.started is not None else now
        return {
            "id": self.id,
            "artifact": self.key,
            "description": self.description,
            "state": self.state,
            "fraction_done": round(self.fraction, 3),
            "message": self.message,
            "elapsed_s": round((self.finished or now) - began, 1) if self.started else 0.0,
            "eta_s": self.eta_s(rate),
            "error": self.error,
        }


def mean_diff_key(layer: int) -> str:
    return f"mean_diff@{layer}"


class Preparer:
    """Runs the server's background jobs on one thread and answers what is ready."""

    def __init__(
        self,
        context: ToolContext,
        tool_names: list[str],
        *,
        wait_s: float = DEFAULT_WAIT_S,
        log_every_s: float | None = None,
    ) -> None:
        self.context = context
        self.tool_names = list(tool_names)
        self.wait_s = wait_s
        self.log_every_s = pg.default_interval() if log_every_s is None else log_every_s
        self._jobs: dict[str, Job] = {}
        self._by_key: dict[str, Job] = {}
        self._queue: list[Job] = []
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._started_defaults = False
        self._count = 0
        self._rate: float | None = None

    # --- the queue ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread and queue the profile's default artifacts (idempotent)."""
        with self._changed:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._work, name="diffscope-preparer", daemon=True
            )
            self._thread.start()

    def _default_keys(self) -> list[str]:
        artifact_tools = {"kl_probe", "difference_lens", "steer", "top_promoted_tokens"}
        keys = ["windows"] if (artifact_tools | set(NEURON_TOOLS)) & set(self.tool_names) else []
        if "kl_probe" in self.tool_names:
            keys.append("kl_probe")
        if {"difference_lens", "steer"} & set(self.tool_names):
            keys.append(mean_diff_key(model_pair(self.context).n_layers // 2))
        if "top_promoted_tokens" in self.tool_names:
            keys.append("diff_mining")
        if set(NEURON_TOOLS) & set(self.tool_names):
            keys.append("neuron_profile")
        return keys

    def _job_for(self, key: str) -> Job:
        """A new job computing `key` (not queued)."""
        self._count += 1
        job_id = f"job-{self._count}"
        arts = artifacts(self.context)
        if key == "windows":
            return Job(job_id, key, "the probe corpus windows", arts.windows, WEIGHTS[key])
        if key == "kl_probe":
            return Job(
                job_id,
                key,
                "the KL probe of the probe corpus (kl_probe's default answer)",
                lambda: prepare_default_probe(self.context),
                WEIGHTS[key],
            )
        if key == "neuron_profile":
            return Job(job_id, key, "the neuron profile", arts.neuron_profile, WEIGHTS[key])
        if key == "diff_mining":
            return Job(job_id, key, "the logit-diff mining", arts.diff_mining, WEIGHTS[key])
        if key.startswith("mean_diff@"):
            layer = int(key.split("@", 1)[1])
            return Job(
                job_id,
                key,
                f"the mean activation difference at layer {layer}",
                lambda: arts.mean_diff(layer, MEAN_DIFF_POSITIONS),
                WEIGHTS["mean_diff"],
            )
        if key.startswith("crosscoder@"):
            layer = int(key.split("@", 1)[1])
            return Job(
                job_id,
                key,
                f"a crosscoder at layer {layer}",
                lambda: arts.crosscoder(layer=layer),
                WEIGHTS["crosscoder"],
            )
        raise ValueError(f"unknown artifact {key!r}")

    def request(self, key: str) -> Job:
        """The job making `key` ready: the existing one unless it failed or was cancelled."""
        with self._changed:
            job = self._by_key.get(key)
            if job is not None and job.state not in ("failed", "cancelled"):
                return job
            job = self._job_for(key)
            self._jobs[job.id] = job
            self._by_key[key] = job
            self._queue.append(job)
            self._changed.notify_all()
        self.start()
        return job

    def job(self, job_id: str) -> Job | None:
        with self._changed:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self._changed:
            return list(self._jobs.values())

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued or working job; it stops at its next batch."""
        with self._changed:
            job = self._jobs.get(job_id)
            if job is None or job.done:
                return job
            job.cancel.set()
            if job.state == "queued":
                self._queue.remove(job)
                self._finish(job, "cancelled")
            return job

    def status_rate(self) -> float | None:
        """Seconds per unit of job weight, measured on finished jobs (None before any)."""
        return self._rate

    def ready(self, key: str) -> bool:
        job = self._by_key.get(key)
        return job is not None and job.state == "completed"

    # --- the worker --------------------------------------------------------------------------

    def _work(self) -> None:
        loader = Job("job-0", "pair", LOAD_JOB, lambda: self.context.wait_ready(), 0.0)
        loader.state, loader.started = "working", time.monotonic()
        with self._changed:
            self._jobs[loader.id] = loader
            self._by_key["pair"] = loader
        self.context.wait_ready()
        try:
            _ = self.context.pair
            defaults = self._default_keys()
        except Exception as exc:  # the pair failed to load: every call reports it itself
            with self._changed:
                self._finish(loader, "failed", str(exc))
            return
        with self._changed:
            self._finish(loader, "completed")
        for key in defaults:
            self.request(key)
        while True:
            with self._changed:
                while not self._queue:
                    self._changed.wait()
                job = self._queue.pop(0)
                job.state, job.started = "working", time.monotonic()
            self._run(job)

    def _run(self, job: Job) -> None:
        ctx = self.context
        if job.started is None:
            job.state, job.started = "working", time.monotonic()
        last_log = [time.monotonic()]
        log.info("preparing %s", job.description)

        def hook(fraction: float, message: str | None) -> None:
            job.fraction, job.message = fraction, message or ""
            now = time.monotonic()
            if now - last_log[0] >= self.log_every_s:
                last_log[0] = now
                eta = job.eta_s(self._rate)
                left = f", ~{eta:.0f} s left" if eta is not None else ""
                log.info("preparing %s: %.0f%%%s", job.description, 100 * fraction, left)
            ctx.lock.yield_to_waiters()

        previous = ctx.set_progress_hook(hook)
        try:
            with pg.cancellable(job.cancel), ctx.lock.held_in_background():
                job.run()
        except pg.Cancelled:
            with self._changed:
                self._finish(job, "cancelled")
            log.info("cancelled preparing %s", job.description)
        except Exception as exc:
            with self._changed:
                self._finish(job, "failed", f"{type(exc).__name__}: {exc}")
            log.warning("preparing %s failed: %s", job.description, job.error)
        else:
            with self._changed:
                self._finish(job, "completed")
            log.info("prepared %s in %.1f s", job.description, time.monotonic() - job.started)
        finally:
            ctx.set_progress_hook(previous)

    def _finish(self, job: Job, state: JobState, error: str | None = None) -> None:
        job.state, job.error, job.finished = state, error, time.monotonic()
        if state == "completed":
            job.fraction = 1.0
            if job.started is not None and job.weight > 0:
                took = (job.finished - job.started) / job.weight
                self._rate = took if self._rate is None else max(self._rate, took)
        self._changed.notify_all()

    # --- what the server asks ----------------------------------------------------------------

    def needs(self, tool: str, args: Mapping[str, Any]) -> list[str]:
        """The artifact keys a call needs (beyond the pair), from its name and arguments."""
        if tool == "kl_probe" and args.get("prompts") is None:
            # the corpus windows stand in for prompts; the default call's answer is prepared
            return ["windows", "kl_probe"] if is_default_corpus_call(args) else ["windows"]
        if tool in NEURON_TOOLS:
            return ["neuron_profile"]
        if tool == "top_promoted_tokens":
            return ["diff_mining"]
        if tool == "difference_lens" or (
            tool == "steer" and args.get("kind", "mean_diff") == "mean_diff"
        ):
            pair = model_pair(self.context)
            layer = args.get("layer")
            if not (isinstance(layer, int) and 0 <= layer < pair.n_layers):
                layer = pair.n_layers // 2  # the default, or a bad layer the tool will refuse
            return [mean_diff_key(layer)]
        if tool in CROSSCODER_TOOLS or (tool == "steer" and args.get("kind") == "latent"):
            layer = args.get("layer")  # only a crosscoder being trained is waited for
            wanted = f"crosscoder@{layer}" if isinstance(layer, int) else "crosscoder@"
            return [
                job.key
                for job in self.jobs()
                if job.key.startswith(wanted) and job.state in ("queued", "working")
            ]
        return []

    def missing(self, tool: str, args: Mapping[str, Any]) -> list[Job]:
        """Jobs still to finish before this call can run (queued on demand); [] when ready."""
        if not self.context.ready:
            return [self._by_key.get("pair") or self._loading_job()]
        return [self.request(key) for key in self.needs(tool, args) if not self.ready(key)]

    def _loading_job(self) -> Job:
        job = Job("job-0", "pair", LOAD_JOB, lambda: None, 0.0, state="working")
        job.started = time.monotonic()
        return job

    def ready_tools(self) -> list[str]:
        """The served tools whose defaults answer at once now."""
        if not self.context.ready:
            return []
        return [name for name in self.tool_names if not self.missing_quiet(name)]

    def missing_quiet(self, tool: str) -> bool:
        """Whether the tool's default call still waits on a job (queues nothing)."""
        try:
            keys = self.needs(tool, {})
        except Exception:  # the pair failed to load: the tool reports that itself
            return False
        return any(not self.ready(key) for key in keys)

    def preparing(self, tool: str, jobs: list[Job]) -> Preparing:
        """The `Preparing` answer for a call waiting on `jobs`."""
        first = jobs[0]
        order = self._queue_snapshot()  # working first, then queued, in the order they run
        working = [j for j in order if j.state == "working"]
        last = max((order.index(j) for j in jobs if j in order), default=-1)
        etas = [j.eta_s(self._rate) for j in order[: last + 1]] or [first.eta_s(self._rate)]
        eta: float | None = None
        if all(e is not None for e in etas):
            eta = round(sum(e for e in etas if e is not None), 1)
        ready = self.ready_tools()
        retry = min(30.0, max(2.0, eta / 2)) if eta is not None else 5.0
        when = f"about {eta:.0f} s left" if eta is not None else "no estimate yet"
        others = f"; ready now: {', '.join(ready)}" if ready else ""
        message = (
            f"{tool} needs {first.description}, which the server is still preparing in the background "
            f"({100 * first.fraction:.0f}% done, {when}). Nothing was charged. Call {tool} again "
            f"in about {retry:.0f} s, or use a ready tool meanwhile{others}."
        )
        return Preparing(
            tool=tool,
            waiting_for=first.description,
            computing_now=working[0].description if working else None,
            fraction_done=round(first.fraction, 3),
            eta_s=eta,
            retry_after_s=round(retry, 1),
            ready_tools=ready,
            message=message,
        )

    def busy(self, tool: str) -> Preparing:
        """The `Preparing` answer for a call whose artifacts are ready but whose models stayed
        busy past the wait (a long batch of background work, or another session's call)."""
        working = [j for j in self._queue_snapshot() if j.state == "working"]
        what = working[0].description if working else "another call"
        eta = working[0].eta_s(self._rate) if working else None
        message = (
            f"{tool} is ready, but the models were busy with {what} for longer than this call "
            f"may wait. Nothing was charged. Call {tool} again in a few seconds (background "
            "work hands the models over between its batches)."
        )
        return Preparing(
            tool=tool,
            waiting_for="the models (busy)",
            computing_now=working[0].description if working else None,
            fraction_done=round(working[0].fraction, 3) if working else 0.0,
            eta_s=eta,
            retry_after_s=2.0,
            ready_tools=self.ready_tools(),
            message=message,
        )

    def _queue_snapshot(self) -> list[Job]:
        with self._changed:
            return [j for j in self._jobs.values() if j.state == "working"] + list(self._queue)

    def status(self) -> dict[str, Any]:
        """The status resource: the pair, every job, the tools ready now."""
        rate = self._rate
        return {
            "pair_loaded": self.context.ready,
            "jobs": [job.view(rate) for job in self.jobs()],
            "ready_tools": self.ready_tools(),
            "preparing": [j.description for j in self._queue_snapshot()],
        }
