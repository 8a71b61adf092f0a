"""Test-only tools and helpers for the agent-loop tests: a fresh registry, never the real tools."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from pydantic import BaseModel, Field

from diffscope.agent.loop import AgentBudget, InvestigationResult, investigate
from diffscope.agent.session import ToolSession
from diffscope.llm import Provider
from diffscope.server import DiffscopeServer, create_server
from diffscope.tools import Budget, Charge, Image, ToolContext, ToolError, ToolRegistry

SECRET = "SECRET-GROUND-TRUTH-zephyr"
ORGANISM = {"name": "fake", "base": "fake-base", "ground_truth": {"description": SECRET}}
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"


class QueryResult(BaseModel):
    """What the fake models answered."""

    base: list[str]
    finetuned: list[str]


class AddResult(BaseModel):
    """A sum."""

    total: int


class TextResult(BaseModel):
    """Some text."""

    text: str


def build_registry() -> ToolRegistry:
    """A fresh registry with the fake tools."""
    reg = ToolRegistry()

    @reg.tool(cost=lambda args: Charge(model_queries=len(args["prompts"])), idempotent=False)
    def query_models(
        ctx: ToolContext,
        prompts: Annotated[list[str], Field(min_length=1, max_length=4, description="prompts")],
    ) -> QueryResult:
        """Ask both models the prompts.

        Each prompt counts as one model query.
        """
        return QueryResult(base=list(prompts), finetuned=[p.upper() for p in prompts])

    @reg.tool(tags=("kl",))
    def add(
        ctx: ToolContext,
        a: Annotated[int, Field(ge=0, le=100, description="first addend")],
        b: Annotated[int, Field(ge=0, le=100, description="second addend")] = 0,
    ) -> AddResult:
        """Add two small numbers.

        A second paragraph that the prompt must not list.
        """
        return AddResult(total=a + b)

    @reg.tool(tags=("neurons",))
    def fails(
        ctx: ToolContext, mode: Annotated[Literal["tool"], Field(description="how to fail")]
    ) -> TextResult:
        """Fail with a ToolError."""
        raise ToolError("mode 'tool' always fails: pick another tool")

    @reg.tool(tags=("lens",))
    def plot(ctx: ToolContext) -> tuple[TextResult, list[Image]]:
        """Draw a plot."""
        return TextResult(text="a plot"), [Image(PNG)]

    @reg.tool(tags=("lens",))
    def big(ctx: ToolContext) -> TextResult:
        """Return a long text."""
        return TextResult(text="x" * 50_000)

    @reg.tool(tags=("kl",))
    def slow(
        ctx: ToolContext, seconds: Annotated[float, Field(ge=0, le=5, description="seconds")]
    ) -> TextResult:
        """Work for a while."""
        time.sleep(seconds)
        return TextResult(text="done")

    return reg


def load_pair() -> dict[str, str]:
    """The trivial pair loader."""
    return {"name": "fake-pair"}


def make_server(profile: str = "method", budget: Budget | None = None) -> DiffscopeServer:
    """An in-process server over the fake tools (its organism carries a secret to leak-check)."""
    return create_server(
        load_pair,
        profile,
        registry=build_registry(),
        budget=budget,
        organism=ORGANISM,
        log_level="WARNING",
    )


def run_loop(
    provider: Provider,
    *,
    budget: AgentBudget | None = None,
    server: DiffscopeServer | None = None,
    log: Path | None = None,
    **kw: Any,
) -> InvestigationResult:
    """Run `investigate` against an in-process fake server."""
    server = server or make_server()

    async def main() -> InvestigationResult:
        async with ToolSession.connect(server) as session:
            return await investigate(provider, session, budget=budget, log=log, **kw)

    return anyio.run(main)
