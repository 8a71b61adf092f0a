"""The MCP server: `create_server` builds it for a profile, `run_server` serves it."""

from diffscope.server.app import DiffscopeServer, create_server
from diffscope.server.run import run_server

__all__ = ["DiffscopeServer", "create_server", "run_server"]
