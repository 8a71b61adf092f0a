"""Fixtures for the benchmark tests: fake organisms on DIFFSCOPE_ORGANISMS and a stub pair loader."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchfakes import fake_pair, write_organisms


@pytest.fixture
def fake_organisms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the fake organisms, named by DIFFSCOPE_ORGANISMS; the pair never loads."""
    import diffscope.organisms.registry as registry

    folder = write_organisms(tmp_path / "organisms")
    monkeypatch.setenv("DIFFSCOPE_ORGANISMS", str(folder))
    monkeypatch.setattr(registry, "load_pair", fake_pair)
    return folder
