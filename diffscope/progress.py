"""Progress for long loops: one small protocol the engine, the zoo builder and the bench all use.

    with progress(rows, "KL probe", show=report) as bar:
        for row in bar:            # iterate (advances one per item) ...
            ...
    with progress(200, "crosscoder", show=True) as bar:
        bar.advance(1, info="loss 0.123")   # ... or advance by hand

`show` says where progress goes:

- `True`: a rich bar on stderr when stderr is a terminal; otherwise (a log, a pipe, CI) plain lines
  `description: 40/200 (20%) 12.3 s elapsed, ~49 s left`, at most one every `interval` seconds
  (default 10 s, env `DIFFSCOPE_PROGRESS_INTERVAL`), plus a final line;
- a callable `(fraction, message)`: called on every advance (the MCP server turns these into
  progress notifications; the CLI into its own bar);
- `False` / `None`: nothing at all.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TextIO, TypeVar

__all__ = [
    "Cancelled",
    "Progress",
    "ProgressFn",
    "Show",
    "cancellable",
    "checkpoint",
    "default_interval",
    "progress",
]

T = TypeVar("T")
ProgressFn = Callable[[float, str], None]
"""A progress callback: (fraction done in 0..1, message)."""
Show = bool | ProgressFn | None
"""Where progress goes: True (stderr bar or lines), a callback, or nowhere (False / None)."""

INTERVAL_ENV = "DIFFSCOPE_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0

_cancel = threading.local()


class Cancelled(Exception):
    """The work on this thread was cancelled (a client cancelled its request, or a job)."""


@contextmanager
def cancellable(event: threading.Event) -> Iterator[threading.Event]:
    """Make the work on this thread stop at its next `checkpoint()` once `event` is set.

    Long loops reach a checkpoint on every `Progress.advance` (and each generated token), so a
    cancelled request stops within one batch instead of running to the end."""
    previous = getattr(_cancel, "event", None)
    _cancel.event = event
    try:
        yield event
    finally:
        _cancel.event = previous


def checkpoint() -> None:
    """Raise `Cancelled` if the work on this thread was cancelled (see `cancellable`)."""
    event: threading.Event | None = getattr(_cancel, "event", None)
    if event is not None and event.is_set():
        raise Cancelled("cancelled")


def default_interval() -> float:
    """Seconds between plain progress lines: `$DIFFSCOPE_PROGRESS_INTERVAL`, else 10."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    try:
        value = float(raw) if raw else DEFAULT_INTERVAL
    except ValueError:
        return DEFAULT_INTERVAL
    return value if value >= 0 else DEFAULT_INTERVAL


def _seconds(s: float, precise: bool = False) -> str:
    if s < 60:
        return f"{s:.1f} s" if precise else f"{s:.0f} s"
    minutes, sec = divmod(int(round(s)), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _is_tty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress(Generic[T]):
    """A progress context: iterate over it, or call `advance`; `note` prints above the bar.

    Build it with `progress(...)`. Outside a `with` block it still works (the first advance
    starts it, the end of iteration or `close()` finishes it).
    """

    def __init__(
        self,
        items: Iterable[T] | None,
        total: int | None,
        description: str,
        *,
        show: Show = True,
        initial: int = 0,
        interval: float | None = None,
        stream: TextIO | None = None,
        transient: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._items = items
        self.total = total
        self.description = description
        self.done = initial
        self.info = ""
        self._initial = initial
        self._callback: ProgressFn | None = show if callable(show) else None
        self._display = show is True
        self._interval = default_interval() if interval is None else interval
        self._stream = stream
        self._transient = transient
        self._clock = clock
        self._started: float | None = None
        self._last_line: float | None = None
        self._closed = False
        self._rich: Any = None
        self._task: Any = None

    # --- lifecycle -------------------------------------------------------------------------------

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    def start(self) -> Progress[T]:
        if self._started is not None:
            return self
        self._started = self._clock()
        self._last_line = self._started
        if self._display and _is_tty(self.stream):
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(file=self.stream),
                transient=self._transient,
            )
            self._rich.start()
            self._task = self._rich.add_task(
                self.description, total=self.total, completed=self.done, info=self.info
            )
        return self

    def close(self) -> None:
        """Finish: stop the bar, or print the final plain line."""
        if self._closed:
            return
        self.start()
        self._closed = True
        if self._rich is not None:
            self._rich.stop()
        elif self._display:
            self._write(final=True)

    def __enter__(self) -> Progress[T]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[T]:
        if self._items is None:
            raise TypeError("this progress was built from a total, not an iterable")
        self.start()
        try:
            for item in self._items:
                yield item
                self.advance()
        finally:
            self.close()

    # --- updates ---------------------------------------------------------------------------------

    def advance(self, n: int = 1, *, message: str | None = None, info: str | None = None) -> None:
        """Count `n` more units done. `message` replaces the callback's default message
        (`description: done/total`); `info` is a short status shown after the bar (e.g. a loss).
        Raises `Cancelled` when this thread's work was cancelled (see `cancellable`)."""
        checkpoint()
        self.start()
        self.done += n
        if info is not None:
            self.info = info
        if self._callback is not None:
            self._callback(self.fraction, message if message is not None else self.message())
        if self._rich is not None:
            self._rich.update(self._task, completed=self.done, info=self.info)
        elif self._display:
            now = self._clock()
            if self._last_line is None or now - self._last_line >= self._interval:
                self._write(final=False)

    def set_description(self, description: str) -> None:
        self.description = description
        if self._rich is not None:
            self._rich.update(self._task, description=description)

    def note(self, text: str) -> None:
        """Print a line on the display (above the bar); nothing when not displaying."""
        if self._rich is not None:
            self._rich.console.print(text)
        elif self._display:
            print(text, file=self.stream, flush=True)

    @property
    def fraction(self) -> float:
        if not self.total:
            return 1.0 if self._closed else 0.0
        return min(1.0, self.done / self.total)

    def message(self) -> str:
        """`description: done/total`, the default callback message."""
        counted = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        return f"{self.description}: {counted}"

    def line(self) -> str:
        """The plain progress line: `description: 40/200 (20%) 12.3 s elapsed, ~49 s left`."""
        now = self._clock()
        elapsed = now - (self._started if self._started is not None else now)
        parts = [self.message()]
        if self.total:
            parts.append(f"({100 * self.done / self.total:.0f}%)")
        parts.append(f"{_seconds(elapsed, precise=True)} elapsed")
        text = " ".join(parts)
        fresh = self.done - self._initial
        if self.total and fresh > 0 and self.done < self.total:
            left = elapsed / fresh * (self.total - self.done)
            text += f", ~{_seconds(left)} left"
        if self.info:
            text += f" [{self.info}]"
        return text

    def _write(self, final: bool) -> None:
        self._last_line = self._clock()
        print(self.line(), file=self.stream, flush=True)


def progress(
    items_or_total: Iterable[T] | int | None,
    description: str = "",
    *,
    show: Show = True,
    total: int | None = None,
    initial: int = 0,
    interval: float | None = None,
    stream: TextIO | None = None,
    transient: bool = False,
) -> Progress[T]:
    """Progress over an iterable (iterate the result) or a total count (call `advance`).

    `show`: True for a stderr bar (terminal) or plain periodic lines (log/pipe), a callable
    `(fraction, message)`, or False/None for silence. `total` overrides `len(items)`; `initial`
    counts units already done (a resumed run). `interval`: seconds between plain lines (default
    `$DIFFSCOPE_PROGRESS_INTERVAL` or 10).
    """
    if isinstance(items_or_total, int):
        items: Iterable[T] | None = None
        count: int | None = items_or_total
    else:
        items = items_or_total
        count = total
        if count is None and items is not None and hasattr(items, "__len__"):
            count = len(items)  # type: ignore[arg-type]
    if total is not None:
        count = total
    return Progress(
        items,
        count,
        description,
        show=show,
        initial=initial,
        interval=interval,
        stream=stream,
        transient=transient,
    )
