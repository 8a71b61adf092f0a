"""Render a benchmark's report.html to a PNG with Debian's headless Chromium.

    python scripts/screenshot_report.py OUT/report.html shot.png [--size 1200,1600]

Exits 2 when Chromium is not installed (`apt-get install -y chromium`), 1 when it fails.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_S = 90


def find_chromium() -> str | None:
    """The first Chromium-like browser on PATH, or None."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_command(browser: str, report: Path, png: Path, size: str, profile: Path) -> list[str]:
    """The headless screenshot command: no sandbox, no GPU, no network chatter."""
    return [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        f"--screenshot={png}",
        f"--window-size={size}",
        report.resolve().as_uri(),
    ]


def screenshot(report: Path, png: Path, size: str = "1200,1600") -> Path:
    """Screenshot `report` into `png`; RuntimeError when Chromium is missing or fails."""
    browser = find_chromium()
    if browser is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    if not report.is_file():
        raise RuntimeError(f"{report} does not exist")
    png = png.resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="diffscope-chromium-") as profile:
        command = chromium_command(browser, report, png, size, Path(profile))
        done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    if not png.exists() or png.stat().st_size == 0:
        raise RuntimeError(
            f"chromium exited with {done.returncode} and wrote no screenshot:\n{done.stderr[-2000:]}"
        )
    return png


def main(argv: list[str] | None = None) -> int:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the report.html to render")
    parser.add_argument("png", type=Path, help="where to write the screenshot")
    parser.add_argument("--size", default="1200,1600", help="window size WIDTH,HEIGHT")
    args = parser.parse_args(argv)
    if find_chromium() is None:
        print("chromium is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 2
    try:
        path = screenshot(args.report, args.png, args.size)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
