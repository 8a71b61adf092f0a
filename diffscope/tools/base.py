"""What every tool shares: ToolError, budgets and their charges, images, and the ToolContext.

A tool is a plain typed function `fn(ctx: ToolContext, ...) -> ResultModel` registered in
`diffscope.tools.registry`. It reads the model pair from `ctx.pair` (loaded once, in the
background), reports long work with `ctx.progress`, keeps expensive intermediate results in
`ctx.cache`, and raises `ToolError` with a message that says what to fix. Budgets are enforced in
one place, `Budgets.charge`, which the registry calls before every tool runs.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diffscope.progress import checkpoint

log = logging.getLogger("diffscope.tools")

ProgressHook = Callable[[float, str | None], None]
MAX_REPORTED_ERRORS = 5
"""Argument problems one error message lists (then how many more there were)."""
MAX_SESSIONS = 1024
"""Client sessions whose budgets are kept (an HTTP server forgets the oldest past this)."""


class ToolError(Exception):
    """A failure the caller can fix: bad arguments, a spent budget, a missing artifact.

    The message is shown to the agent as the tool's answer, so it should say what to do next.
    """


class Budget(BaseModel):
    """Limits for one session; `None` means unlimited."""

    model_config = ConfigDict(extra="forbid")

    tool_calls: int | None = Field(default=None, ge=0, description="tool calls allowed")
    model_queries: int | None = Field(
        default=None, ge=0, description="prompts sent to the models (each prompt counts once)"
    )
    generated_tokens: int | None = Field(default=None, ge=0, description="tokens generated")


class Usage(BaseModel):
    """What a session has spent so far."""

    tool_calls: int = 0
    model_queries: int = 0
    generated_tokens: int = 0


@dataclass(frozen=True)
class Charge:
    """What one tool call costs on top of the tool call itself."""

    model_queries: int = 0
    tokens: int = 0


class Budgets:
    """Thread-safe spend tracker for one `Budget`; `charge` is the only place limits are checked."""

    def __init__(self, limits: Budget | None = None) -> None:
        self.limits = limits or Budget()
        self._used = Usage()
        self._lock = threading.Lock()

    def charge(
        self, tool_calls: int = 1, model_queries: int = 0, tokens: int = 0, *, strict: bool = True
    ) -> None:
        """Record a spend, or raise ToolError (recording nothing) if it would pass a limit.

        With `strict=False` the spend is recorded even past the limit (for costs only known after
        the work is done, such as tokens actually generated); the next strict charge then fails.
        """
        wanted = {
            "tool_calls": tool_calls,
            "model_queries": model_queries,
            "generated_tokens": tokens,
        }
        for kind, amount in wanted.items():
            if amount < 0:
                raise ValueError(f"cannot charge a negative amount of {kind}: {amount}")
        with self._lock:
            if strict:
                for kind, amount in wanted.items():
                    limit = getattr(self.limits, kind)
                    used = getattr(self._used, kind)
                    if amount and limit is not None and used + amount > limit:
                        need = f"; this call needs {amount}" if used < limit else ""
                        raise ToolError(
                            f"budget spent: {kind} used {used} of {limit}{need}; submit your answer"
                        )
            for kind, amount in wanted.items():
                setattr(self._used, kind, getattr(self._used, kind) + amount)

    def usage(self) -> Usage:
        """A copy of what has been spent."""
        with self._lock:
            return self._used.model_copy()

    def remaining(self) -> dict[str, int | None]:
        """What is left of each limit (`None` for unlimited)."""
        used = self.usage()
        return {
            kind: None if limit is None else max(0, limit - getattr(used, kind))
            for kind, limit in self.limits.model_dump().items()
        }


@dataclass(frozen=True)
class Image:
    """An image a tool returns next to its structured result (shown to the agent as ImageContent)."""

    data: bytes
    mime_type: str = "image/png"

    @classmethod
    def from_figure(cls, figure: Any, dpi: int = 100) -> Image:
        """Render a matplotlib figure (anything with `savefig`) as PNG."""
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
        return cls(buffer.getvalue(), "image/png")


def describe_validation_error(
    tool: str, error: ValidationError, *, headline: str | None = None
) -> str:
    """One readable line: each bad argument (or field), what is wrong, what was given."""
    parts = []
    errors = error.errors(include_url=False)
    for item in errors[:MAX_REPORTED_ERRORS]:  # a few, each short: never the caller's input in full
        loc = ".".join(str(part) for part in item.get("loc", ())) or "arguments"
        if len(loc) > 60:
            loc = loc[:57] + "..."
        given = item.get("input")
        shown = repr(given)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        got = "" if item.get("type") == "missing" else f" (got {shown})"
        parts.append(f"{loc}: {item.get('msg', 'invalid')}{got}")
    if len(errors) > MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - MAX_REPORTED_ERRORS} more problems")
    if headline is not None:
        return f"{headline} in {tool}: " + "; ".join(parts)
    return f"invalid arguments for {tool}: " + "; ".join(parts) + ". Fix them and call again."


class ModelLock:
    """The models' lock (re-entrant): tool calls take it with `with`; background work holding it
    calls `yield_to_waiters()` between batches, so a waiting call runs within about one batch.

    Hooks are installed per batch, so handing the models over between batches is safe."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._waiting = 0
        self._changed = threading.Condition()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        with self._changed:
            self._waiting += 1
        try:
            return self._lock.acquire(blocking, timeout)
        finally:
            with self._changed:
                self._waiting -= 1
                self._changed.notify_all()

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> ModelLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def waiting(self) -> int:
        """Threads waiting for the lock right now."""
        return self._waiting

    @contextmanager
    def held_in_background(self) -> Iterator[None]:
        """Hold the lock for background work without counting as a waiter."""
        self._lock.acquire()
        try:
            yield
        finally:
            self._lock.release()

    def yield_to_waiters(self, timeout: float = 300.0) -> None:
        """From background work holding the lock once: let every waiting call take it first."""
        if not self._waiting:
            return
        self._lock.release()
        try:
            with self._changed:
                self._changed.wait_for(lambda: self._waiting == 0, timeout)
        finally:
            self._lock.acquire()


class ToolContext:
    """Everything a tool sees: the pair (loaded in the background), locks, budgets, cache, progress.

    `loader` is called once, in a daemon thread started by `start_loading()` (the server does
    this at start-up), so the server answers `initialize` and `tools/list` at once; `pair` blocks
    until the load has finished. Pass `pair=` instead for an object that is already loaded.
    """

    def __init__(
        self,
        loader: Callable[[], Any] | None = None,
        *,
        pair: Any = None,
        budget: Budget | Budgets | None = None,
        public_info: Mapping[str, Any] | None = None,
        cache: dict[str, Any] | None = None,
    ) -> None:
        if loader is not None and pair is not None:
            raise ValueError("give either a loader or a loaded pair, not both")
        self._loader = loader
        self._pair = pair
        self._load_error: BaseException | None = None
        self._loaded = threading.Event()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        if loader is None:
            self._loaded.set()
        self.lock = ModelLock()
        self._budgets = budget if isinstance(budget, Budgets) else Budgets(budget)
        self._session_budgets: dict[str, Budgets] = {}
        self._sessions_lock = threading.Lock()
        self.public_info: dict[str, Any] = dict(public_info or {})
        self.cache: dict[str, Any] = {} if cache is None else cache
        self._local = threading.local()
        self._warn_lock = threading.Lock()
        self._between_calls: list[str] = []

    def start_loading(self) -> None:
        """Start loading the pair in a background thread (idempotent)."""
        with self._start_lock:
            if self._loaded.is_set() or self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._load, name="diffscope-pair-loader", daemon=True
            )
            self._thread.start()

    def _load(self) -> None:
        assert self._loader is not None
        start = time.perf_counter()
        log.info("loading the model pair in the background")
        try:
            self._pair = self._loader()
        except BaseException as exc:  # any failure is reported to every tool call
            self._load_error = exc
            log.exception("loading the model pair failed")
        else:
            log.info("model pair loaded in %.1f s", time.perf_counter() - start)
        finally:
            self._loaded.set()

    @property
    def ready(self) -> bool:
        """Whether the pair has finished loading (successfully or not)."""
        return self._loaded.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Start loading if needed and wait up to `timeout` seconds; True once loading finished."""
        self.start_loading()
        return self._loaded.wait(timeout)

    @property
    def pair(self) -> Any:
        """The loaded pair; waits for the background load, raises ToolError if it failed."""
        self.wait_ready()
        if self._load_error is not None:
            # the reason (paths, `zoo:NAME` references) is in the server's log, never in the
            # answer: it would tell an investigator which organism it is looking at
            raise ToolError(
                f"the model pair failed to load ({type(self._load_error).__name__}; the server's "
                "log has the reason); no tool that needs the models can run in this session"
            )
        return self._pair

    @property
    def budgets(self) -> Budgets:
        """The budget of the session whose call runs on this thread (see `using_budgets`), else
        the context's own (the one session of a stdio or in-process server)."""
        local = getattr(self, "_local", None)
        found: Budgets | None = getattr(local, "budgets", None)
        return found if found is not None else self._budgets

    def session_budgets(self, session: str | None) -> Budgets:
        """The budget of one client session (same limits, its own spend); `None`: the context's
        own. The oldest sessions are forgotten past `MAX_SESSIONS`."""
        if session is None:
            return self._budgets
        with self._sessions_lock:
            found = self._session_budgets.pop(session, None)
            if found is None:
                found = Budgets(self._budgets.limits)
            self._session_budgets[session] = found  # most recent last
            while len(self._session_budgets) > MAX_SESSIONS:
                self._session_budgets.pop(next(iter(self._session_budgets)))
            return found

    @contextmanager
    def using_budgets(self, budgets: Budgets) -> Iterator[Budgets]:
        """Charge the calls made on this thread to `budgets` (a session's) inside the block."""
        previous = getattr(self._local, "budgets", None)
        self._local.budgets = budgets
        try:
            yield budgets
        finally:
            self._local.budgets = previous

    def charge(self, model_queries: int = 0, tokens: int = 0, *, strict: bool = True) -> None:
        """Charge extra model queries or tokens during a call (the call itself is already charged)."""
        self.budgets.charge(tool_calls=0, model_queries=model_queries, tokens=tokens, strict=strict)

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress of the current call (0..1); a no-op when nobody listens. Raises
        `progress.Cancelled` when the call was cancelled (the one place tools stop cooperatively)."""
        checkpoint()
        hook: ProgressHook | None = getattr(self._local, "hook", None)
        if hook is None:
            return
        fraction = min(1.0, max(0.0, float(fraction)))
        last = getattr(self._local, "last", None)
        if last is not None and message == last[1] and fraction < 1.0 and fraction - last[0] < 0.01:
            return
        self._local.last = (fraction, message)
        try:
            hook(fraction, message)
        except Exception:  # progress must never break a tool
            log.debug("progress notification failed", exc_info=True)

    def warn(self, message: str) -> None:
        """Add a warning line to the answer of the call running on this thread; one raised
        outside any call (background preparation) goes with the next call's answer."""
        pending: list[str] | None = getattr(self._local, "warnings", None)
        if pending is not None:
            pending.append(message)
            return
        with self._warn_lock:
            self._between_calls.append(message)

    @contextmanager
    def collecting_warnings(self) -> Iterator[list[str]]:
        """The warning lines of the call on this thread (and any raised between calls)."""
        with self._warn_lock:
            found, self._between_calls = list(self._between_calls), []
        previous = getattr(self._local, "warnings", None)
        self._local.warnings = found
        try:
            yield found
        finally:
            self._local.warnings = previous

    def set_progress_hook(self, hook: ProgressHook | None) -> ProgressHook | None:
        """Install the progress hook for calls on this thread; returns the previous one."""
        previous: ProgressHook | None = getattr(self._local, "hook", None)
        self._local.hook = hook
        self._local.last = None
        return previous
