"""Test-only tools and helpers for the server tests: a fresh registry, never the real tools."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from diffscope.tools import Charge, Image, ToolContext, ToolError, ToolRegistry

PAIR = {"name": "fake-pair"}


def tiny_png() -> bytes:
    """A valid 1x1 PNG, built by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


class QueryResult(BaseModel):
    """What the fake models answered."""

    pair: str
    answers: list[str]


class AddResult(BaseModel):
    """A sum."""

    total: int = Field(description="a + b")


class EchoResult(BaseModel):
    """Echoed text."""

    text: str


class SlowResult(BaseModel):
    """When a slow call ran and how many calls overlapped it."""

    call: int
    overlapping: int


class FailResult(BaseModel):
    """Never returned."""

    ok: bool


class PlotResult(BaseModel):
    """A plot's caption (the image rides next to it)."""

    caption: str


class Strict(BaseModel):
    """Used to raise a ValidationError from inside a tool."""

    value: int


def build_registry() -> ToolRegistry:
    """A fresh registry with the fake tools."""
    reg = ToolRegistry()
    state = {"active": 0, "max_active": 0, "calls": 0}
    state_lock = threading.Lock()

    @reg.tool(cost=lambda args: Charge(model_queries=len(args["prompts"])), idempotent=False)
    def query_models(
        ctx: ToolContext,
        prompts: Annotated[
            list[str],
            Field(min_length=1, max_length=4, description="prompts to send to both models"),
        ],
        max_new_tokens: Annotated[int, Field(ge=1, le=32, description="tokens per answer")] = 4,
    ) -> QueryResult:
        """Ask both models the prompts.

        Each prompt counts as one model query.
        """
        ctx.charge(tokens=max_new_tokens * len(prompts), strict=False)
        return QueryResult(pair=ctx.pair["name"], answers=[p.upper() for p in prompts])

    @reg.tool(tags=("kl",))
    def add(
        ctx: ToolContext,
        a: Annotated[int, Field(ge=0, le=100, description="first addend")],
        b: Annotated[int, Field(ge=0, le=100, description="second addend")] = 0,
    ) -> AddResult:
        """Add two small numbers."""
        return AddResult(total=a + b)

    @reg.tool(tags=("lens",), title="Echo")
    def echo(
        ctx: ToolContext,
        text: Annotated[str, Field(min_length=1, max_length=50, description="text to echo")],
    ) -> EchoResult:
        """Echo the text back."""
        return EchoResult(text=text)

    @reg.tool(tags=("kl",))
    def slow(
        ctx: ToolContext,
        seconds: Annotated[float, Field(ge=0, le=2, description="how long to work")] = 0.05,
    ) -> SlowResult:
        """Work for a while, reporting progress."""
        with state_lock:
            state["active"] += 1
            state["calls"] += 1
            state["max_active"] = max(state["max_active"], state["active"])
            call = state["calls"]
        try:
            for step in range(1, 5):
                time.sleep(seconds / 4)
                ctx.progress(step / 4, f"step {step} of 4")
            ctx.cache["slow_max_active"] = state["max_active"]
            return SlowResult(call=call, overlapping=state["max_active"])
        finally:
            with state_lock:
                state["active"] -= 1

    @reg.tool(tags=("neurons",))
    def fails(
        ctx: ToolContext,
        mode: Annotated[
            Literal["tool", "value", "crash", "bad_return"], Field(description="how to fail")
        ],
    ) -> FailResult:
        """Fail in the chosen way."""
        if mode == "tool":
            raise ToolError("mode 'tool' always fails: pick another mode")
        if mode == "value":
            Strict.model_validate({"value": "not a number"})
        if mode == "crash":
            raise RuntimeError("boom")
        return "not a result"  # type: ignore[return-value]

    @reg.tool(tags=("lens",))
    def plot(
        ctx: ToolContext,
        caption: Annotated[str, Field(max_length=40, description="caption")] = "a plot",
    ) -> tuple[PlotResult, list[Image]]:
        """Draw a tiny plot."""
        return PlotResult(caption=caption), [Image(tiny_png())]

    @reg.tool(tags=("lens",))
    def noisy(ctx: ToolContext) -> EchoResult:
        """Print to stdout and stderr before answering (must not corrupt stdio)."""
        print("stray print to stdout from a tool")
        sys.stdout.flush()
        os.write(1, b"stray raw write to fd 1\n")
        print("stray print to stderr", file=sys.stderr)
        return EchoResult(text="still fine")

    return reg


def load_pair() -> dict[str, str]:
    """The trivial pair loader."""
    return dict(PAIR)


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(
    url: str,
    proc: subprocess.Popen[bytes],
    timeout_s: float,
    *,
    describe: Callable[[], str] | None = None,
    poll_s: float = 0.1,
) -> None:
    """Return once an HTTP server answers at `url`; AssertionError when `proc` exits first or
    `timeout_s` passes (its message from `describe`, e.g. the server's stderr, or the exit code)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                reason = describe() if describe is not None else f"exit code {proc.poll()}"
                raise AssertionError(f"the HTTP server did not start: {reason}") from None
            time.sleep(poll_s)
