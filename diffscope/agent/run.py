"""One investigation end to end over a server the entry point describes: connect, run, write the log.

The agent never builds a server and never sees the pair or its organism: the entry point (the CLI
or the benchmark) hands it a `ServerConnection`, either a factory of an in-process MCP server or
the command that serves the same pair over stdio, and labels for the log. Whatever the
investigator may know about the pair it reads from the server (the `diffscope://organism`
resource, the tools).

    connection = ServerConnection(command=[sys.executable, "-m", "diffscope.server", "sea_topic"])
    result = investigate_over(connection, provider, kind="method", out=Path("runs"))
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio

from diffscope.agent.budget import AgentBudget
from diffscope.agent.loop import InvestigationResult, failed_result, investigate
from diffscope.agent.session import DEFAULT_TIMEOUT_S, ToolSession
from diffscope.llm import Provider, ProviderError, get_provider

AGENT_KINDS = ("blackbox", "method")
Transport = Literal["inprocess", "stdio"]
TRANSPORTS: tuple[str, ...] = ("inprocess", "stdio")


@dataclass(frozen=True)
class ServerConnection:
    """How an investigator reaches its MCP server; built by the entry point, opened by the agent.

    Give exactly one of `server`, a zero-argument factory of an in-process MCP server object
    (called when the run starts, so a server that cannot be built fails the run, not the
    caller), or `command`, the program and arguments that serve over stdio (`env` is added to
    the child's environment). `timeout_s` bounds each request.
    """

    server: Callable[[], Any] | None = None
    command: Sequence[str] | None = None
    env: Mapping[str, str] | None = None
    timeout_s: float | None = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if (self.server is None) == (self.command is None):
            raise ValueError("a ServerConnection needs exactly one of server= or command=")
        if self.server is not None and self.env is not None:
            raise ValueError("env applies to a spawned (stdio) server only")

    @property
    def transport(self) -> Transport:
        """ "inprocess" or "stdio" (what the run log records)."""
        return "inprocess" if self.server is not None else "stdio"

    @asynccontextmanager
    async def open(self) -> AsyncIterator[ToolSession]:
        """An open tool session to the server (built or spawned now)."""
        if self.server is not None:
            async with ToolSession.connect(self.server(), timeout_s=self.timeout_s) as session:
                yield session
            return
        assert self.command is not None
        async with ToolSession.connect(
            list(self.command), env=self.env, timeout_s=self.timeout_s
        ) as session:
            yield session


def resolve_profile(agent: str) -> tuple[str, str]:
    """`(kind, profile)` for an agent name: "blackbox", "method" or any tool profile name."""
    agent = agent.strip()
    if not agent:
        raise ValueError("the agent must be 'blackbox', 'method' or a tool profile name")
    kind = "blackbox" if agent == "blackbox" else "method"
    return kind, agent


def build_provider(model: str, agent: str, base_url: str | None = None) -> Provider:
    """The provider for `model`; "heuristic" is the offline investigator for `agent`."""
    if model.strip().lower() == "heuristic":
        try:
            from diffscope.agent.heuristic import get_heuristic
        except ImportError as exc:
            raise ProviderError(
                "the offline heuristic investigator is not available in this install "
                f"(diffscope.agent.heuristic.get_heuristic could not be imported: {exc})"
            ) from exc
        return get_heuristic(agent)
    return get_provider(model, base_url=base_url)


def log_target(out: Path | None, run_id: str) -> Path:
    """Where the log goes: `out` if it names a .json file, else `out/RUN_ID.json`.

    Without `out`: `$DIFFSCOPE_HOME/runs/RUN_ID.json`.
    """
    if out is None:
        from diffscope.paths import home

        return home() / "runs" / f"{run_id}.json"
    out = Path(out)
    return out if out.suffix == ".json" else out / f"{run_id}.json"


def investigate_over(
    connection: ServerConnection,
    provider: Provider,
    *,
    kind: str | None = None,
    budget: AgentBudget | None = None,
    out: Path | None = None,
    organism: str | None = None,
    agent: str | None = None,
    profile: str | None = None,
) -> InvestigationResult:
    """Open the connection, investigate, close, and write the log (see `log_target`).

    `organism`, `agent` and `profile` are labels for the log only; the model never sees them.
    A server that cannot start gives a failed result (status "error") with its log.
    """
    budget = budget or AgentBudget()
    info = {
        "organism": organism,
        "agent": agent,
        "profile": profile,
        "transport": connection.transport,
    }

    async def main() -> InvestigationResult:
        result: InvestigationResult | None = None
        try:
            async with connection.open() as session:
                result = await investigate(provider, session, budget=budget, kind=kind, **info)
        except Exception as exc:  # the server could not start, or died while closing
            if result is None:
                result = failed_result(exc, provider, budget, **info)
        return result

    result = anyio.run(main)
    result.log_path = result.log.save(log_target(out, result.log.run_id))
    return result
