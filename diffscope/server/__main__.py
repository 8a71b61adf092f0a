"""`python -m diffscope.server ORGANISM|--base B --finetuned F [--profile P]`: serve a pair's tools.

The pair options build a `workspace.PairSpec` (the same spec `diffscope serve` and the benchmark
use), so a spawned server opens exactly the workspace an in-process one would. Serves stdio by
default (what an MCP client or an investigator agent spawns), or streamable HTTP with
`--transport http`. A bad combination of options is one plain line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from diffscope.pair_options import add_pair_args
from diffscope.server.run import TRANSPORTS, add_serving_options, serve
from diffscope.workspace import spec_from_args


def build_parser() -> argparse.ArgumentParser:
    """The options: the pair (as `PairSpec` fields), the profile, transport and budget."""
    parser = argparse.ArgumentParser(
        prog="python -m diffscope.server",
        description="Serve the diffing tools of one base/fine-tune pair over MCP.",
    )
    add_pair_args(parser)
    parser.add_argument("--windows", type=int, help="cap on the probe corpus windows")
    parser.add_argument(
        "--profile",
        default="method",
        help="tool profile: blackbox, method, or a method tag (neurons, kl, ...)",
    )
    parser.add_argument(
        "--transport", choices=TRANSPORTS, default="stdio", help="stdio (default) or http"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on with http")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on with http")
    parser.add_argument("--max-tool-calls", type=int, help="session budget of tool calls")
    parser.add_argument(
        "--max-model-queries", type=int, help="session budget of prompts sent to the models"
    )
    parser.add_argument("--log-level", default="INFO", help="log level on stderr (default INFO)")
    add_serving_options(parser)
    return parser


def error_line(exc: ValidationError) -> str:
    """A ValidationError as one line of its messages."""
    return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        spec = spec_from_args(args)
        serve(
            spec,
            args.profile,
            args.transport,
            args.host,
            args.port,
            max_tool_calls=args.max_tool_calls,
            max_model_queries=args.max_model_queries,
            log_level=args.log_level,
            prepare_in_background=not args.no_prepare,
            allowed_hosts=args.allowed_host,
            no_token=args.no_token,
        )
    except (ValidationError, ValueError) as exc:
        # a bad spec, an unknown organism or profile, a pair that cannot load: one line on stderr
        # (what an MCP client's server log shows), before the server announces itself
        message = error_line(exc) if isinstance(exc, ValidationError) else str(exc)
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
