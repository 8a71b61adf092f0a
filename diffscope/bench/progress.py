"""A job-count progress bar (rich, on stderr) that can also be switched off entirely."""

from __future__ import annotations

from typing import Any


class JobProgress:
    """A context manager: `advance(label)` counts one job done and updates the label.

    With `enabled=False` it does nothing, so callers need no branches.
    """

    def __init__(self, enabled: bool, total: int, label: str, done: int = 0) -> None:
        self.enabled = enabled
        self.total = total
        self.label = label
        self.done = done
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> JobProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.done)
        return self

    def advance(self, label: str | None = None) -> None:
        """One more job done; `label` replaces the description."""
        self.done += 1
        if label is not None:
            self.label = label
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=self.label)

    def note(self, text: str) -> None:
        """Print a line above the bar (nothing when disabled)."""
        if self._bar is not None:
            self._bar.console.print(text)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
