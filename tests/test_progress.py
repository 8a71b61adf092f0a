"""diffscope.progress: plain periodic lines off a terminal, callbacks, silence."""

from __future__ import annotations

import io

from diffscope import progress as progress_mod
from diffscope.progress import progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_are_periodic_with_a_final_line():
    out = io.StringIO()  # not a tty
    clock = Clock()
    bar = progress(200, "profile", stream=out, interval=10.0)
    bar._clock = clock
    with bar:
        for _ in range(200):
            clock.now += 0.3075  # 40 steps = 12.3 s
            bar.advance()
    lines = out.getvalue().splitlines()
    # one line each time 10 s have passed (at 10.1, 20.3, ... s), then the final line
    assert lines[0].startswith("profile: 33/200 (16%) 10.1 s elapsed, ~")
    assert lines[-1] == "profile: 200/200 (100%) 1 min 01 s elapsed"
    assert len(lines) == 7
    assert all(" left" in line for line in lines[:-1])


def test_line_format_matches_the_documented_example():
    clock = Clock()
    bar = progress(200, "description", stream=io.StringIO())
    bar._clock = clock
    bar.start()
    clock.now = 12.3
    bar.advance(40)
    assert bar.line() == "description: 40/200 (20%) 12.3 s elapsed, ~49 s left"


def test_interval_from_environment(monkeypatch):
    monkeypatch.setenv("DIFFSCOPE_PROGRESS_INTERVAL", "0")
    out = io.StringIO()
    for _ in progress(range(3), "rows", stream=out):
        pass
    assert out.getvalue().splitlines() == [
        line for line in out.getvalue().splitlines() if line.startswith("rows: ")
    ]
    assert len(out.getvalue().splitlines()) == 4  # three advances + the final line
    monkeypatch.setenv("DIFFSCOPE_PROGRESS_INTERVAL", "bogus")
    assert progress_mod.default_interval() == 10.0


def test_callback_and_silence():
    seen: list[tuple[float, str]] = []
    out = io.StringIO()
    items = list(
        progress([1, 2, 3, 4], "mining", show=lambda f, m: seen.append((f, m)), stream=out)
    )
    assert items == [1, 2, 3, 4]
    assert seen[-1] == (1.0, "mining: 4/4")
    assert [f for f, _ in seen] == [0.25, 0.5, 0.75, 1.0]
    with progress(5, "quiet", show=False, stream=out) as bar:
        bar.advance(5, message="ignored")
    assert out.getvalue() == ""


def test_custom_message_and_resume():
    seen: list[tuple[float, str]] = []
    with progress(10, "train", show=lambda f, m: seen.append((f, m)), initial=4) as bar:
        bar.advance(2, message="step 6")
    assert seen == [(0.6, "step 6")]
