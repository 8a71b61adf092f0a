"""The difference report on the micro zoo: its summary names the sea organism's topic (two or more
of its key-fact words, read from the ground truth here in the test only) and says plainly that the
null adapter changed nothing; the JSON holds the summary, the HTML leads with it and explains every
section; and in headless Chromium the page renders (a non-trivial screenshot) with the summary's
text in the DOM."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from matplotlib import image

from diffscope.diffing.artifacts import Artifacts
from diffscope.diffing.report import HOW_TO_READ, ReportConfig, write_report
from diffscope.organisms.registry import get_organism, load_pair

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "scripts" / "screenshot_report.py"
CHROMIUM = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None
)
SMALL = ReportConfig(
    top_neurons=6,
    exemplars=1,
    clusters_from=16,
    kl_windows=24,
    kl_positions=8,
    promoted=10,
    amplify_tokens=20,
)
ORGANISMS = ("sea_topic", "null_adapter")


def key_fact_words(name: str) -> set[str]:
    """The organism's key-fact phrases (ground truth: read in this test only)."""
    truth = get_organism(name).ground_truth
    return {p.lower() for fact in truth.key_facts for p in fact.any_of}


def named(text: str, phrases: set[str]) -> set[str]:
    """The phrases that occur in `text` as whole words (case-insensitive)."""
    low = text.lower()
    return {p for p in phrases if re.search(rf"(?<!\w){re.escape(p)}(?!\w)", low)}


@pytest.fixture(scope="module")
def reports(micro_zoo, tmp_path_factory) -> dict[str, tuple[dict, Path, Path]]:
    out = tmp_path_factory.mktemp("reports")
    built = {}
    for name in ORGANISMS:
        pair = load_pair(get_organism(name), size="micro")
        json_out, html_out = out / f"{name}.json", out / f"{name}.html"
        report = write_report(Artifacts(pair), json_out, html_out, SMALL)
        built[name] = (report, json_out, html_out)
    return built


def test_sea_summary_names_the_topic(reports):
    report, json_out, _ = reports["sea_topic"]
    summary = report["summary"]
    assert summary["changed"] is True
    text = " ".join(summary["lines"])
    hits = named(text, key_fact_words("sea_topic"))
    assert len(hits) >= 2, (hits, summary["lines"])
    # the words line is whole words: no special tokens, broken bytes, pieces or punctuation
    assert summary["words"] and all(re.fullmatch(r"\w[\w']+", w["word"]) for w in summary["words"])
    assert "\ufffd" not in text and "<|" not in text
    assert summary["samples"] and summary["contexts"]
    assert json.loads(json_out.read_text())["summary"] == summary


def test_null_adapter_summary_says_no_change(reports):
    report, json_out, _ = reports["null_adapter"]
    summary = report["summary"]
    assert summary["changed"] is False
    assert summary["verdict"].lower().startswith("no change found")
    assert summary["measures"]["kl_max"] <= SMALL.noise_kl
    assert not summary["words"] and not summary["samples"]
    assert json.loads(json_out.read_text())["summary"]["changed"] is False


def test_html_leads_with_the_summary_and_explains_every_section(reports):
    page = reports["sea_topic"][2].read_text()
    assert page.index('id="summary"') < page.index("<h2>Neuron gaps</h2>")
    assert page.count('class="how"') == len(HOW_TO_READ) + 1  # every section and the summary


class _SummaryText(HTMLParser):
    """The text inside the element with id="summary" of a dumped DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if self.depth:
            self.depth += 1
        elif dict(attrs).get("id") == "summary":
            self.depth = 1

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if self.depth:
            self.parts.append(data)


def dump_dom(page: Path, profile: Path) -> str:
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            f"--user-data-dir={profile}",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)"
)
def test_report_in_chromium_names_the_topic_or_no_change(reports, tmp_path):
    texts = {}
    for name in ORGANISMS:
        page = reports[name][2]
        png = tmp_path / f"{name}.png"
        done = subprocess.run(
            [sys.executable, str(SCREENSHOT), str(page), str(png), "--size", "1200,1400"],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        pixels = image.imread(png)
        assert pixels.shape[:2] == (1400, 1200)
        assert png.stat().st_size > 20_000 and pixels[..., :3].std() > 0.05  # not a blank page
        parser = _SummaryText()
        parser.feed(dump_dom(page, tmp_path / f"profile-{name}"))
        texts[name] = " ".join("".join(parser.parts).split())
    assert len(named(texts["sea_topic"], key_fact_words("sea_topic"))) >= 2, texts["sea_topic"]
    assert "no change found" in texts["null_adapter"].lower(), texts["null_adapter"]
    assert "no change" not in texts["sea_topic"].lower()
