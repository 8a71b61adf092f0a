"""A test-only diffscope MCP server over stdio, serving the fake tools of `serverfakes`.

Run: `python tests/server/stdio_server.py` (stdio) or `... stdio_server.py http PORT` (streamable
HTTP on 127.0.0.1, bearer token from $DIFFSCOPE_TOKEN or generated and printed on stderr);
`DIFFSCOPE_TEST_PROFILE` picks the profile and `DIFFSCOPE_TEST_TOOL_CALLS` caps the tool-call
budget (of each client session).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(1, str(HERE.parent.parent))

from serverfakes import build_registry, load_pair  # noqa: E402

from diffscope.server import create_server, run_server  # noqa: E402
from diffscope.tools import Budget  # noqa: E402


def main() -> None:
    """Build the fake server and serve it on stdio (or HTTP when asked)."""
    calls = os.environ.get("DIFFSCOPE_TEST_TOOL_CALLS")
    server = create_server(
        load_pair,
        os.environ.get("DIFFSCOPE_TEST_PROFILE", "method"),
        registry=build_registry(),
        budget=Budget(tool_calls=int(calls) if calls else None),
        organism={"name": "fake", "base": "fake-base", "ground_truth": {"description": "secret"}},
        log_level="WARNING",
    )
    if sys.argv[1:2] == ["http"]:
        run_server(server, "http", port=int(sys.argv[2]), log_level="WARNING")
    else:
        run_server(server, "stdio", log_level="WARNING")


if __name__ == "__main__":
    main()
