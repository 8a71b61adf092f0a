"""The HTML report renders in headless Chromium with the chart visible (scripts/screenshot_report.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from benchfakes import Factory, run_bench
from matplotlib import image

from diffscope.bench.render import AGENT_COLOURS

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "screenshot_report.py"
CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
)


def colour_pixels(pixels: np.ndarray, hex_colour: str, tolerance: float = 0.06) -> int:
    """How many pixels are within `tolerance` (per channel, 0-1 scale) of a colour."""
    target = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return int((np.abs(pixels[..., :3] - target) <= tolerance).all(axis=-1).sum())


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"
)
def test_report_renders_with_a_visible_chart(fake_organisms: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    run_bench(
        ["alpha", "beta"],
        ["blackbox", "method"],
        "scripted",
        runs=2,
        out=out,
        provider_factory=Factory(),
        progress=False,
    )
    png = tmp_path / "report.png"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out / "report.html"), str(png)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    assert png.stat().st_size > 20_000

    pixels = image.imread(png)
    assert pixels.shape[:2] == (1600, 1200)
    # the chart sits near the top: its bars carry each agent's colour, in quantity
    top = pixels[:800]
    assert colour_pixels(top, AGENT_COLOURS[0]) > 2_000  # blackbox bars
    assert colour_pixels(top, AGENT_COLOURS[1]) > 2_000  # method bars
    assert top[..., :3].std() > 0.1  # not a blank page
