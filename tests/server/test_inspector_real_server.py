"""The real `diffscope serve` driven by a third-party client, the MCP Inspector CLI (npx): tools are
listed, several diffing tools are called on a micro organism without errors, and the README's Claude
Desktop config works through the Inspector's --config/--server form."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSPECTOR = ["npx", "-y", "@modelcontextprotocol/inspector@0.15", "--cli"]

pytestmark = pytest.mark.skipif(
    shutil.which("npx") is None, reason="npx (Node.js) is not installed"
)


def readme_config() -> dict[str, Any]:
    """The Claude Desktop config block of the README, parsed."""
    text = (ROOT / "README.md").read_text()
    for block in re.findall(r"```json\n(.*?)```", text, flags=re.S):
        if "mcpServers" in block:
            return json.loads(block)
    raise AssertionError("README has no claude_desktop_config.json block")


def inspect(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [*INSPECTOR, *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def config_file(micro_zoo, diffscope_home, tmp_path_factory) -> Path:
    """The README's config with this machine's Python and the test cache filled in."""
    config = readme_config()
    server = config["mcpServers"]["diffscope"]
    server["command"] = sys.executable
    server["env"].update({"DIFFSCOPE_HOME": str(diffscope_home), "DIFFSCOPE_ZOO_SIZE": "micro"})
    path = tmp_path_factory.mktemp("claude") / "claude_desktop_config.json"
    path.write_text(json.dumps(config))
    return path


def call(config: Path, tool: str, *args: str) -> dict[str, Any]:
    return inspect(
        "--config",
        str(config),
        "--server",
        "diffscope",
        "--method",
        "tools/call",
        "--tool-name",
        tool,
        *(("--tool-arg", *args) if args else ()),
    )


def test_inspector_lists_the_method_tools_from_the_readme_config(config_file):
    listed = inspect(
        "--config", str(config_file), "--server", "diffscope", "--method", "tools/list"
    )
    names = {tool["name"] for tool in listed["tools"]}
    assert {
        "query_models",
        "kl_probe",
        "top_promoted_tokens",
        "top_neurons",
        "neuron_exemplars",
        "difference_lens",
        "steer",
        "amplify",
    } <= names
    assert all("outputSchema" in tool for tool in listed["tools"])


@pytest.mark.parametrize(
    "tool,args",
    [
        ("query_models", ('prompts=["Once upon a time, Mia"]', "max_new_tokens=8")),
        ("top_neurons", ("k=5",)),
        ("top_promoted_tokens", ("k=10",)),
        ("kl_probe", ('prompts=["The sun was warm and the children"]',)),
    ],
)
def test_inspector_calls_real_tools_without_errors(config_file, tool, args):
    result = call(config_file, tool, *args)
    assert result.get("isError") is not True, result
    assert result["structuredContent"]


def test_inspector_sees_tool_errors_as_is_error(config_file):
    result = call(config_file, "neuron_exemplars", "layer=99", "neuron=0")
    assert result["isError"] is True
    assert "layer" in json.dumps(result["content"])
