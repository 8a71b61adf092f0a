"""Fixtures for the tool tests: micro organisms loaded once, a shared ToolContext, live clients."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from toolsupport import MAIN_ORGANISM, LiveClient, live_client, loaded  # noqa: E402

from diffscope.server import create_server  # noqa: E402
from diffscope.tools import ToolContext, load_tool_modules  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One intra-op thread: the tiny micro models run far faster on a loaded, shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tool_context() -> ToolContext:
    """One context over the main micro organism (unlimited budget), shared by the tool tests."""
    load_tool_modules()
    return ToolContext(pair=loaded(MAIN_ORGANISM))


@pytest.fixture(scope="session")
def method_client(tool_context: ToolContext) -> Iterator[LiveClient]:
    """A client connected (in process) to the method-profile server over `tool_context`."""
    with live_client(create_server(tool_context, "method")) as client:
        yield client
