"""The benchmark's job counter: `diffscope.progress` counting jobs (a bar in a terminal, plain
periodic lines in a log), or nothing at all when switched off."""

from __future__ import annotations

from typing import Any

from diffscope.progress import progress


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

    def __enter__(self) -> JobProgress:
        if self.enabled:
            self._bar = progress(self.total, self.label, show=True, initial=self.done)
            self._bar.__enter__()
        return self

    def advance(self, label: str | None = None) -> None:
        """One more job done; `label` replaces the description."""
        self.done += 1
        if label is not None:
            self.label = label
        if self._bar is not None:
            self._bar.set_description(self.label)
            self._bar.advance(1)

    def note(self, text: str) -> None:
        """Print a line above the bar (nothing when disabled)."""
        if self._bar is not None:
            self._bar.note(text)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None
