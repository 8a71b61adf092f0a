"""One investigation of one pair, as the CLI's `investigate` and every benchmark job run it.

The entry point's half of the split: it turns an organism name (or any `PairSpec`) into a
`ServerConnection` (an in-process server built by `server.build_server` over the workspace, or
the `python -m diffscope.server ...` command that serves the same spec over stdio) and hands the
agent only that connection, a provider and labels for the log. Both transports open the same
workspace, so they give the same evidence; the agent never holds the organism.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from diffscope.agent.budget import AgentBudget
from diffscope.agent.loop import InvestigationResult
from diffscope.agent.run import (
    TRANSPORTS,
    ServerConnection,
    Transport,
    build_provider,
    investigate_over,
    resolve_profile,
)
from diffscope.llm import Provider
from diffscope.server.run import build_server, stdio_command
from diffscope.workspace import PairSpec


def server_connection(
    spec: PairSpec,
    profile: str,
    budget: AgentBudget,
    transport: Transport = "inprocess",
    serve_args: Sequence[str] = (),
) -> ServerConnection:
    """How the agent reaches the server of `spec`'s `profile` tools, under `budget`'s limits."""
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown transport {transport!r}; choose 'inprocess' or 'stdio'")
    limits = budget.server_limits()
    if transport == "stdio":
        return ServerConnection(command=stdio_command(spec, profile, **limits, extra=serve_args))
    if serve_args:
        raise ValueError("serve_args apply to the stdio transport only")

    def factory() -> object:  # log quietly: an in-process server shares the caller's terminal
        return build_server(
            spec, profile, **limits, log_level="WARNING", prepare_in_background=True
        )

    return ServerConnection(server=factory)


def run_investigation(
    organism: str | PairSpec,
    agent: str,
    model: str,
    budget: AgentBudget | None = None,
    out: Path | None = None,
    transport: Transport = "inprocess",
    base_url: str | None = None,
    *,
    provider: Provider | None = None,
    serve_args: Sequence[str] = (),
) -> InvestigationResult:
    """Investigate one pair end to end and write the run log (see `agent.run.log_target`).

    `organism` is an organism name or a `PairSpec`; `provider` overrides the one built from
    `model` (tests); `serve_args` are extra arguments for the stdio server command.
    """
    spec = organism if isinstance(organism, PairSpec) else PairSpec(organism=organism)
    budget = budget or AgentBudget()
    kind, profile = resolve_profile(agent)
    connection = server_connection(spec, profile, budget, transport, serve_args)
    chosen = provider if provider is not None else build_provider(model, agent, base_url)
    return investigate_over(
        connection,
        chosen,
        kind=kind,
        budget=budget,
        out=out,
        organism=spec.label,
        agent=agent,
        profile=profile,
    )
