"""`diffscope desktop-config`: the printed entry uses this Python, a write merges into an existing
config with a backup, a broken config is left alone, and the written entry starts a server that a
third-party client (the MCP Inspector CLI) lists tools from."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diffscope.cli import main


def test_printed_entry_runs_this_python_with_the_cache(capsys, diffscope_home: Path) -> None:
    assert main(["desktop-config", "sea_topic", "--size", "micro", "--profile", "kl"]) == 0
    entry = json.loads(capsys.readouterr().out)["mcpServers"]["diffscope"]
    assert entry["command"] == sys.executable
    assert entry["args"][:3] == ["-m", "diffscope.server", "sea_topic"]
    assert entry["args"][-2:] == ["--profile", "kl"]
    assert entry["env"]["DIFFSCOPE_HOME"] == str(diffscope_home)


def test_write_merges_and_keeps_a_backup(tmp_path: Path) -> None:
    config = tmp_path / "claude_desktop_config.json"
    config.write_text(json.dumps({"mcpServers": {"other": {"command": "x"}}, "theme": "dark"}))
    assert main(["desktop-config", "sea_topic", "--write", "--config", str(config)]) == 0
    merged = json.loads(config.read_text())
    assert merged["theme"] == "dark"
    assert set(merged["mcpServers"]) == {"other", "diffscope"}
    backups = list(tmp_path.glob("claude_desktop_config.json.*.bak"))
    assert len(backups) == 1 and "diffscope" not in json.loads(backups[0].read_text())["mcpServers"]


def test_a_broken_config_is_left_untouched(tmp_path: Path, capsys) -> None:
    config = tmp_path / "claude_desktop_config.json"
    config.write_text("{ not json")
    assert main(["desktop-config", "sea_topic", "--write", "--config", str(config)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert config.read_text() == "{ not json"


def test_an_unknown_profile_is_refused(capsys) -> None:
    assert main(["desktop-config", "sea_topic", "--profile", "nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("npx") is None, reason="npx (Node.js) is not installed")
def test_the_written_entry_serves_through_the_inspector(micro_zoo, tmp_path: Path) -> None:
    config = tmp_path / "claude_desktop_config.json"
    argv = ["desktop-config", "sea_topic", "--size", "micro", "--profile", "blackbox"]
    assert main([*argv, "--write", "--config", str(config)]) == 0
    proc = subprocess.run(
        ["npx", "-y", "@modelcontextprotocol/inspector@0.15", "--cli", "--config", str(config)]
        + ["--server", "diffscope", "--method", "tools/list"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = {tool["name"] for tool in json.loads(proc.stdout)["tools"]}
    assert "query_models" in names
