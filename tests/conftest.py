"""Shared fixtures: an isolated $DIFFSCOPE_HOME and the micro toy zoo, built once per test session."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# before torch starts its OpenMP threads (as `import diffscope` does): idle threads sleep rather
# than spin, which on a busy 2-core machine is several times faster
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)

# every test run gets its own cache unless DIFFSCOPE_TEST_HOME points at a reusable one
_HOME = os.environ.get("DIFFSCOPE_TEST_HOME") or tempfile.mkdtemp(prefix="diffscope-test-")
os.environ["DIFFSCOPE_HOME"] = _HOME
os.environ["DIFFSCOPE_ZOO_SIZE"] = "micro"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def diffscope_home() -> Path:
    return Path(_HOME)


@pytest.fixture(scope="session")
def micro_zoo(diffscope_home: Path, request: pytest.FixtureRequest):
    """The whole micro zoo (base, every toy organism, perturbations): built once, then cached.

    Its training progress goes past pytest's capture to the terminal (plain periodic lines in a
    log), so a first run is not silent for the minutes the build takes."""
    from diffscope.organisms.zoo import build_zoo

    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        results = build_zoo("micro", progress=True)
    return {r.name: r for r in results}


@pytest.fixture(scope="session")
def micro_root(micro_zoo) -> Path:
    from diffscope.organisms.registry import zoo_root

    return zoo_root("micro")
