"""The long fuzz run of issue #16: thousands of hostile calls to a real diffscope server.

Starts `python -m diffscope.server ORGANISM --size micro` twice, over stdio and over streamable
HTTP (bearer token), and sends through the official mcp client hypothesis-generated arguments for
every tool, unknown tool names and hundreds of stray argument names; then writes malformed
JSON-RPC raw to the stdio server and POSTs it raw over HTTP (the fixed corpus of the fuzz tests
plus generated messages). It counts, and prints as one line of JSON at the end:

- `calls`: tool calls made (and `malformed`: raw messages sent);
- `crashes`: calls that found the server gone (the transport failed);
- `hangs_over_60s`: calls with no answer within 60 s;
- `internal_errors`: answers saying "internal error";
- `leaks`: answers showing the organism's name, recipe, ground-truth description or key facts;
- `bad_answers`: an empty or over-long error, or a success without structured content;
- `unanswered`: malformed messages that got no JSON-RPC error with the right id.

All but `calls` and `malformed` should be zero. Needs the dev extras (hypothesis) and the micro
zoo (built on first use). Run: `python benchmarks/fuzz_server.py --calls 2100`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "server"))
sys.path.insert(0, str(ROOT / "tests" / "tools"))

from fuzzsupport import (  # noqa: E402
    JSONRPC_ISH,
    MALFORMED,
    ORGANISM,
    RawStdio,
    expected_id,
    http_client,
    http_server,
    http_session,
    needs_answer,
    raw_post,
    server_command,
    stdio_client,
)
from hostile import CALLS, UNKNOWN_TOOLS, json_safe, leaked, needles, problems, shown  # noqa: E402
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from diffscope.organisms.registry import get_organism  # noqa: E402
from diffscope.organisms.zoo import build_zoo  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", type=int, default=2100, help="tool calls in all, over both transports"
    )
    parser.add_argument(
        "--http-share", type=float, default=0.3, help="fraction of the calls sent over HTTP"
    )
    parser.add_argument(
        "--malformed", type=int, default=200, help="generated malformed messages per transport"
    )
    parser.add_argument("--organism", default=ORGANISM, help="micro zoo organism to serve")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    return parser


def fuzz_tools(client: Any, n: int, hidden: dict[str, str], tally: Counter, rng_seed: int) -> None:
    """`n` generated calls (one in ten to an unknown tool) through `client`, tallied."""
    unknown = st.tuples(UNKNOWN_TOOLS, st.dictionaries(st.text(max_size=5), st.integers()))
    calls = st.one_of(*([CALLS] * 9), unknown)
    alive = {"yes": True}

    @seed(rng_seed)
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(call=calls, raw_nan=st.booleans())
    def one(call: tuple[str, dict[str, Any]], raw_nan: bool) -> None:
        if not alive["yes"]:
            return
        tool, args = call
        sent = args if raw_nan else json_safe(args)
        tally["calls"] += 1
        try:
            result = client.call(tool, sent)
        except TimeoutError:
            tally["hangs_over_60s"] += 1
            return
        except Exception as exc:  # the transport failed: the server is gone
            print(f"crash on {tool}: {type(exc).__name__}: {exc}", file=sys.stderr)
            tally["crashes"] += 1
            alive["yes"] = False
            return
        text = shown(result)
        for problem in problems(text, result.is_error, result.structured_content):
            key = "internal_errors" if problem == "internal error" else "bad_answers"
            tally[key] += 1
            print(f"{problem}: {tool} {str(sent)[:200]} -> {text[:200]}", file=sys.stderr)
        if leaked(text, hidden):
            tally["leaks"] += 1
            print(f"leak: {tool} {str(sent)[:200]}", file=sys.stderr)

    one()


def generated_malformed(n: int, rng_seed: int) -> list[bytes]:
    """`n` generated messages that need an answer (blank lines, notifications and well-formed
    responses dropped)."""
    found: list[bytes] = []

    @seed(rng_seed)
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(raw=JSONRPC_ISH)
    def collect(raw: bytes) -> None:
        if needs_answer(raw):
            found.append(raw)

    collect()
    return found


def right(answers: list[dict[str, Any]], raw: bytes, transport: str) -> bool:
    """Whether `raw` got exactly one answer with the right id (else say so on stderr)."""
    if len(answers) == 1 and answers[0].get("id") == expected_id(raw):
        return True
    print(f"unanswered over {transport}: {raw[:200]!r} -> {str(answers)[:300]}", file=sys.stderr)
    return False


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    build_zoo("micro", only=[args.organism], progress=False)
    hidden = needles(get_organism(args.organism))
    tally: Counter = Counter()
    for key in ("crashes", "hangs_over_60s", "internal_errors", "leaks", "bad_answers"):
        tally[key] = 0
    over_http = round(args.calls * args.http_share)
    start = time.perf_counter()
    with stdio_client(args.organism) as client:
        fuzz_tools(client, args.calls - over_http, hidden, tally, args.seed)
    messages = [raw for raw, _, _ in MALFORMED] + generated_malformed(args.malformed, args.seed)
    unanswered = 0
    raw_stdio = RawStdio(server_command(args.organism))
    try:
        for raw in messages:
            unanswered += not right(raw_stdio.answers_to(raw), raw, "stdio")
    finally:
        raw_stdio.close()
    with http_server(args.organism) as url:
        with http_client(url) as client:
            fuzz_tools(client, over_http, hidden, tally, args.seed + 1)
        headers = http_session(url)
        for raw in messages:
            _, answers = raw_post(url, headers, raw)
            unanswered += not right(answers, raw, "http")
    summary = {
        "calls": tally["calls"],
        "crashes": tally["crashes"],
        "hangs_over_60s": tally["hangs_over_60s"],
        "internal_errors": tally["internal_errors"],
        "leaks": tally["leaks"],
        "bad_answers": tally["bad_answers"],
        "malformed": 2 * len(messages),
        "unanswered": unanswered,
        "organism": args.organism,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
