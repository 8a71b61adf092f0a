"""The `diffscope` command line: organisms list/show, errors as one plain line with exit code 2,
--help on every command, and the difference report on a micro organism."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from diffscope.cli import build_parser, main, pair_spec
from diffscope.workspace import corpus_source, corpus_spec

COMMANDS = [
    ["organisms", "list"],
    ["organisms", "show"],
    ["zoo", "build"],
    ["demo"],
    ["prepare"],
    ["report"],
    ["serve"],
    ["investigate"],
    ["crosscoder", "train"],
    ["crosscoder", "capabilities"],
    ["bench"],
    ["grade"],
]


@pytest.mark.parametrize("words", COMMANDS, ids=lambda w: " ".join(w))
def test_every_command_has_help(words, capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*words, "--help"])
    assert done.value.code == 0
    assert "usage: diffscope" in capsys.readouterr().out


def test_organisms_list_json_has_type_and_kind(capsys):
    assert main(["organisms", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) >= 9
    assert all({"name", "type", "kind"} <= set(r) for r in rows)
    assert not any("ground_truth" in r for r in rows)


def test_show_hides_ground_truth_unless_revealed(capsys):
    assert main(["organisms", "show", "sea_topic"]) == 0
    hidden = capsys.readouterr().out
    assert "ground_truth" not in hidden
    assert main(["organisms", "show", "sea_topic", "--reveal"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["ground_truth"]["key_facts"]


def test_user_errors_are_one_line_with_exit_code_2():
    proc = subprocess.run(
        [sys.executable, "-m", "diffscope.cli", "organisms", "show", "nope"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "unknown organism" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "diffscope.cli", "report", "--base", "/no/such"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "--finetuned" in proc.stderr


def test_report_writes_json_and_html(micro_zoo, tmp_path, capsys):
    json_out, html_out = tmp_path / "r.json", tmp_path / "r.html"
    code = main(
        [
            "report",
            "perturb_flip_k5",
            "--size",
            "micro",
            "--json",
            str(json_out),
            "--html",
            str(html_out),
        ]
    )
    assert code == 0
    report = json.loads(json_out.read_text())
    assert report["top_neurons"] and report["promoted_tokens"] and report["clusters"]
    assert report["kl"]["mean"] > 0
    page = html_out.read_text()
    assert page.count("data:image/png;base64,") >= 4 and "<table>" in page
    assert "top neurons" in capsys.readouterr().out


def test_crosscoder_train_windows_sets_the_corpus_size():
    parser = build_parser()

    def corpus(argv):
        spec = pair_spec(parser.parse_args(argv))
        return corpus_spec(corpus_source(spec), spec.windows)

    default = corpus(["crosscoder", "train", "music_lora"])
    spec = corpus(["crosscoder", "train", "music_lora", "--windows", "8000"])
    assert (spec.max_windows, spec.n_docs) == (8000, 8000)
    assert (default.max_windows, default.n_docs) == (384, 1200)
    with pytest.raises(ValueError, match="--windows must be at least 1"):
        corpus(["crosscoder", "train", "x", "--windows", "0"])
