"""Claude Desktop configuration: the server entry for this installation, printed or merged in.

`diffscope desktop-config [ORGANISM]` prints a `mcpServers` entry that starts the stdio server
with this installation's own Python (`sys.executable`) and cache folder, so the command a client
spawns exists on this machine. `--write` merges the entry into the user's
`claude_desktop_config.json`, keeping a timestamped backup of the file it replaces.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from diffscope.paths import home, write_text


def default_config_path() -> Path:
    """Where Claude Desktop keeps its configuration on this platform."""
    if sys.platform == "darwin":
        return (
            Path.home()
            / "Library"
            / "Application Support"
            / "Claude"
            / "claude_desktop_config.json"
        )
    if sys.platform.startswith("win"):
        appdata = os.environ.get("APPDATA") or str(Path.home() / "AppData" / "Roaming")
        return Path(appdata) / "Claude" / "claude_desktop_config.json"
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "Claude" / "claude_desktop_config.json"


def server_entry(server_args: list[str]) -> dict[str, Any]:
    """One `mcpServers` entry: this Python running `diffscope.server` with `server_args`."""
    env = {"DIFFSCOPE_HOME": str(home())}
    if os.environ.get("DIFFSCOPE_ZOO_SIZE"):
        env["DIFFSCOPE_ZOO_SIZE"] = os.environ["DIFFSCOPE_ZOO_SIZE"]
    if os.environ.get("DIFFSCOPE_ORGANISMS"):
        env["DIFFSCOPE_ORGANISMS"] = os.environ["DIFFSCOPE_ORGANISMS"]
    return {"command": sys.executable, "args": ["-m", "diffscope.server", *server_args], "env": env}


def merge_entry(config_path: Path, name: str, entry: dict[str, Any]) -> Path | None:
    """Put `entry` under `mcpServers[name]` in `config_path`; return the backup's path, if any.

    A file that is not a JSON object is left untouched and reported (ValueError), so a user's
    hand-written configuration is never lost.
    """
    config: dict[str, Any] = {}
    backup: Path | None = None
    if config_path.exists():
        text = config_path.read_text(encoding="utf-8")
        if text.strip():
            try:
                config = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{config_path} is not valid JSON ({exc.msg} at line {exc.lineno}); "
                    "fix it or move it aside, then run again"
                ) from exc
            if not isinstance(config, dict):
                raise ValueError(
                    f"{config_path} does not hold a JSON object; fix it or move it aside"
                )
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = config_path.with_name(f"{config_path.name}.{stamp}.bak")
        shutil.copy2(config_path, backup)
    servers = config.setdefault("mcpServers", {})
    if not isinstance(servers, dict):
        raise ValueError(f"'mcpServers' in {config_path} is not an object; fix it and run again")
    servers[name] = entry
    write_text(config_path, json.dumps(config, indent=2) + "\n")
    return backup
