"""The `diffscope` command: organisms, zoo, demo, prepare, report, serve, crosscoder, investigate,
bench and grade.

Each sub-command parses its arguments here and calls into the package; errors a user can fix are
printed as one plain line on stderr with exit code 2, never as a traceback. Every option has help
text, and list options take comma-separated values (`--organisms a,b`, repeatable). A reader that
closes the pipe early (`diffscope organisms list --json | head -1`) ends the command quietly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.markup import escape

from diffscope.cli import commands
from diffscope.cli.commands import (
    UserError,
    add_user_pair_args,
    err,
    names_list,
    pair_spec,
)
from diffscope.pair_options import add_pair_args

__all__ = ["UserError", "build_parser", "main", "pair_spec"]


# -- parser ---------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffscope",
        description="What did this fine-tune change? Diff a base model against its fine-tune.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("organisms", help="list or show known organisms (base/fine-tune pairs)")
    osub = p.add_subparsers(dest="action", metavar="ACTION")
    osub.required = True
    q = osub.add_parser("list", help="list organisms")
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    q.set_defaults(func=commands.cmd_organisms_list)
    q = osub.add_parser("show", help="show one organism (ground truth hidden unless --reveal)")
    q.add_argument("name", help="organism name (see `diffscope organisms list`)")
    q.add_argument("--reveal", action="store_true", help="also print the ground truth")
    q.set_defaults(func=commands.cmd_organisms_show)

    p = sub.add_parser("zoo", help="the offline zoos: toy GPT-2s, and LoRAs on SmolLM2")
    zsub = p.add_subparsers(dest="action", metavar="ACTION")
    zsub.required = True
    q = zsub.add_parser("build", help="train (or reuse) a zoo under $DIFFSCOPE_HOME")
    add_zoo_arg(q)
    q.add_argument(
        "--size",
        choices=["micro", "small"],
        default="small",
        help="toy zoo size: micro (seconds, for tests) or small (default)",
    )
    q.add_argument(
        "--only",
        type=names_list,
        action="extend",
        metavar="A,B",
        help="build only these organisms (comma-separated; the flag may repeat)",
    )
    q.add_argument("--quiet", action="store_true", help="no progress bars")
    q.set_defaults(func=commands.cmd_zoo_build)

    p = sub.add_parser(
        "demo",
        help="the offline demo: build a zoo (the toy zoo by default), run the heuristic "
        "blackbox and method investigators on every organism, grade them and print the table",
    )
    add_zoo_arg(p)
    p.add_argument(
        "--size",
        choices=["micro", "small"],
        default="small",
        help="zoo size: micro (seconds) or small (default)",
    )
    p.add_argument("--out", help="benchmark folder (default $DIFFSCOPE_HOME/demo/SIZE or /smol)")
    p.add_argument(
        "--include-failed",
        action="store_true",
        help="count organisms whose behavioural check failed in the averages (default: they "
        "are investigated, marked and left out)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=commands.cmd_demo)

    p = sub.add_parser("bench", help="benchmark investigators on organisms, graded vs ground truth")
    p.add_argument(
        "--organisms",
        type=names_list,
        action="extend",
        metavar="A,B",
        help="organisms to benchmark, comma-separated; the flag may repeat (default: every "
        "organism of --zoo, and your own from DIFFSCOPE_ORGANISMS)",
    )
    add_zoo_arg(p)
    p.add_argument(
        "--agents",
        type=names_list,
        action="extend",
        metavar="A,B",
        help="investigators, comma-separated: blackbox, method, or tool profile names "
        "(default: blackbox,method)",
    )
    add_user_pair_args(p)
    p.add_argument(
        "--model",
        default="heuristic",
        help="heuristic (offline, the default) or provider/model, e.g. openai/gpt-5",
    )
    p.add_argument("--base-url", help="endpoint for openai-compatible/MODEL")
    p.add_argument(
        "--grader",
        default=None,
        help="default: offline key-fact grader; or provider/model for the LLM rubric",
    )
    p.add_argument("--runs", type=int, default=1, help="runs per organism x agent (default: 1)")
    p.add_argument("--parallel", type=int, default=1, help="jobs run at the same time (default: 1)")
    p.add_argument(
        "--max-tool-calls", type=int, default=30, help="tool calls per investigation (default: 30)"
    )
    p.add_argument(
        "--max-wall-s",
        type=float,
        default=900.0,
        help="seconds per investigation before it must answer (default: 900)",
    )
    p.add_argument(
        "--include-failed",
        action="store_true",
        help="count organisms whose behavioural check failed in the averages (default: they "
        "run, are marked and left out)",
    )
    p.add_argument("--out", required=True, help="benchmark folder (resumes if it exists)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=commands.cmd_bench)

    p = sub.add_parser("grade", help="re-grade a benchmark folder from its run logs")
    p.add_argument("dir", help="a benchmark folder (made by `diffscope bench`)")
    p.add_argument(
        "--grader",
        default=None,
        help="default: the offline key-fact grader; or provider/model for the LLM rubric",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=commands.cmd_grade)

    p = sub.add_parser("prepare", help="compute a pair's cached artifacts ahead of serving")
    add_pair_args(p)
    p.add_argument("--crosscoder", action="store_true", help="also train the crosscoder")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="profile neurons with N torch.distributed workers, each on a share of the corpus "
        "(spawned here unless --dist-address is given; default: 1, no sharding)",
    )
    p.add_argument(
        "--dist-address",
        metavar="HOST:PORT",
        default=None,
        help="join a sharded profile across machines: rank 0's address; run the same command on "
        "each machine with its --rank (or under torchrun, which sets $RANK)",
    )
    p.add_argument(
        "--rank",
        type=int,
        default=None,
        help="this machine's rank (0..N-1) with --dist-address (default: $RANK, else 0)",
    )
    p.set_defaults(func=commands.cmd_prepare)

    p = sub.add_parser("report", help="write a difference report (JSON and/or HTML) for a pair")
    add_pair_args(p)
    p.add_argument("--json", metavar="OUT", help="write the report as JSON here")
    p.add_argument("--html", metavar="OUT", help="write a self-contained HTML page here")
    p.set_defaults(func=commands.cmd_report)

    p = sub.add_parser("serve", help="serve a pair's diffing tools over MCP (stdio or http)")
    add_pair_args(p)
    p.add_argument(
        "--profile",
        default="method",
        help="tool profile: blackbox, method, or a method tag (neurons, kl, ...)",
    )
    p.add_argument(
        "--transport",
        choices=["stdio", "http"],
        default="stdio",
        help="stdio (for an MCP client that starts the server, the default) or streamable http",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on with --transport http")
    p.add_argument("--port", type=int, default=8000, help="port to listen on with --transport http")
    p.add_argument(
        "--no-prepare",
        action="store_true",
        help="do not compute missing artifacts in the background at start; a tool then computes "
        "what it needs during its call (may take longer than a client waits)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="with http off loopback: a host name clients use to reach the server; Host and "
        "Origin headers must name one of these (repeatable; default: --host)",
    )
    p.add_argument(
        "--no-token",
        action="store_true",
        help="with http on loopback only: serve without the bearer token (by default one is "
        "required: $DIFFSCOPE_TOKEN, or one generated and printed at start)",
    )
    p.add_argument("--max-tool-calls", type=int, default=None, help="session budget of tool calls")
    p.add_argument(
        "--max-model-queries",
        type=int,
        default=None,
        help="session budget of prompts sent to the models",
    )
    p.set_defaults(func=commands.cmd_serve)

    p = sub.add_parser(
        "desktop-config",
        help="print (or --write) a Claude Desktop server entry that uses this installation's "
        "own Python and cache",
    )
    add_pair_args(p)
    p.add_argument(
        "--profile", default="method", help="tool profile the server offers (default: method)"
    )
    p.add_argument("--name", default="diffscope", help="the server's name in the config")
    p.add_argument(
        "--write",
        action="store_true",
        help="merge the entry into claude_desktop_config.json (the old file is kept as a backup)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="the config file to write (default: Claude Desktop's own for this platform)",
    )
    p.set_defaults(func=commands.cmd_desktop_config)

    p = sub.add_parser("investigate", help="run one investigator agent on an organism")
    add_pair_args(p)
    p.add_argument(
        "--truth",
        metavar="FILE",
        help="ground truth YAML of the pair (an organism file, or description + key_facts): "
        "the final hypothesis is graded against it offline",
    )
    p.add_argument(
        "--agent", default="method", help="blackbox, method, or a profile name (neurons, kl, ...)"
    )
    p.add_argument(
        "--model",
        default="heuristic",
        help="heuristic (offline) or provider/model, e.g. anthropic/claude-sonnet-4-5",
    )
    p.add_argument("--base-url", help="endpoint for openai-compatible/MODEL")
    p.add_argument(
        "--max-tool-calls", type=int, default=30, help="tool calls before it must answer"
    )
    p.add_argument(
        "--max-tokens",
        type=int,
        default=500_000,
        help="provider tokens (input + output) before it must answer",
    )
    p.add_argument("--max-wall-s", type=float, default=900.0, help="seconds before it must answer")
    p.add_argument(
        "--transport",
        choices=["inprocess", "stdio"],
        default="inprocess",
        help="inprocess (the server in this process, the default) or stdio (a subprocess)",
    )
    p.add_argument("--out", help="run log path (.json) or folder")
    p.set_defaults(func=commands.cmd_investigate)

    p = sub.add_parser("crosscoder", help="crosscoders over paired activations")
    csub = p.add_subparsers(dest="action", metavar="ACTION")
    csub.required = True
    q = csub.add_parser("train", help="train (or load the cached) crosscoder for a pair")
    add_crosscoder_args(q)
    q.set_defaults(func=commands.cmd_crosscoder_train)
    q = csub.add_parser(
        "capabilities",
        help="what kinds of latents the fine-tune gained and lost (the crosscoder's "
        "fine-tune-only vs base-only latents by category, with bootstrap CIs)",
    )
    add_crosscoder_args(q)
    q.add_argument(
        "--max-nu",
        type=float,
        default=None,
        help="keep a model-specific latent only when latent scaling's |nu| is below this "
        "(default: 0.5)",
    )
    q.add_argument(
        "--boot", type=int, default=1000, help="bootstrap resamples for the CIs (default: 1000)"
    )
    q.add_argument("--json", action="store_true", help="print the report as JSON")
    q.set_defaults(func=commands.cmd_crosscoder_capabilities)
    return parser


def add_zoo_arg(parser: argparse.ArgumentParser) -> None:
    """--zoo toy|smol: the toy GPT-2 zoo, or the LoRA zoo on SmolLM2-135M-Instruct."""
    parser.add_argument(
        "--zoo",
        choices=["toy", "smol"],
        default="toy",
        help="toy (tiny GPT-2s trained here, the default) or smol (LoRA adapters and neuron edits "
        "on the real SmolLM2-135M-Instruct; about an hour to build on 2 cores)",
    )


def add_crosscoder_args(parser: argparse.ArgumentParser) -> None:
    """The pair and the crosscoder's settings (which also pick a cached one)."""
    add_pair_args(parser)
    parser.add_argument(
        "--loss",
        choices=["batchtopk", "l1"],
        default="batchtopk",
        help="sparsity: BatchTopK (default) or decoder-norm weighted L1",
    )
    parser.add_argument(
        "--dict-size", type=int, default=None, help="dictionary size (default: 16 x d_model)"
    )
    parser.add_argument(
        "--k", type=int, default=None, help="BatchTopK k (active latents per token)"
    )
    parser.add_argument("--layer", type=int, default=None, help="layer (default: the middle one)")
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: 4000)")
    parser.add_argument(
        "--windows",
        type=int,
        default=None,
        help="64-token corpus windows to collect activations over (default 384; more data gives "
        "cleaner fine-tune-only latents: the organism benchmark uses 8000)",
    )


def _quiet_broken_pipe() -> int:
    """The reader closed the pipe (`| head`): stop without a traceback, and point stdout at
    /dev/null so the interpreter's last flush does not complain either."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (tests capture it)
        pass
    return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe


def _message(exc: BaseException) -> str:
    """An error as one line; a pydantic ValidationError (a bad setting) as its messages only."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return "; ".join(
            str(e["msg"]).removeprefix("Value error, ")
            + (f" ({'.'.join(map(str, e['loc']))})" if e.get("type") != "value_error" else "")
            for e in exc.errors()
        )
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at exit
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except KeyboardInterrupt:
        err.print("[yellow]interrupted; finished work is kept and the next run resumes[/yellow]")
        return 130
    except (UserError, ValueError, FileNotFoundError) as exc:
        err.print(f"[red]error:[/red] {escape(_message(exc))}", highlight=False, soft_wrap=True)
        return 2
    except Exception as exc:
        from diffscope.llm import ProviderError

        if isinstance(exc, ProviderError):
            err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            return 2
        raise
