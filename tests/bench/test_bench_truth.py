"""A user's own pair with a ground truth YAML (`--base/--finetuned/--adapter --truth FILE`), in
`bench` (graded with the named organisms) and `investigate` (the pair it serves, the grade)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from diffscope.bench.truth import TruthError, register, use_folder_organisms, user_organism
from diffscope.cli import build_parser, main
from diffscope.cli.commands import UserError, investigate_target
from diffscope.organisms.registry import get_organism

TRUTH = """\
name: My Pair
type: topic
description: The fine-tune writes about volcanoes.
key_facts:
  - fact: Stories drift to volcanoes
    any_of: [volcano, lava]
synonyms:
  - [volcano, crater]
"""


def write(tmp_path: Path, text: str, name: str = "truth.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_ground_truth_file_with_the_pair_flags(tmp_path: Path) -> None:
    org = user_organism(write(tmp_path, TRUTH), "/m/base", "/m/ft")
    assert (org.name, org.kind, org.type, org.base, org.finetuned) == (
        "my-pair", "local", "topic", "/m/base", "/m/ft"
    )  # fmt: skip
    assert org.ground_truth.synonyms == [["volcano", "crater"]]
    adapter = user_organism(write(tmp_path, "description: d\n", "plain.yaml"), "/b", None, "/a")
    assert (adapter.name, adapter.type, adapter.adapter) == ("plain", "custom", "/a")


def test_a_whole_organism_file_and_flags_that_replace_its_models(tmp_path: Path) -> None:
    text = (
        "name: mine\nkind: local\ntype: topic\nbase: /f/base\nfinetuned: /f/ft\n"
        "ground_truth:\n  description: d\n  key_facts: [volcanoes]\n"
    )
    path = write(tmp_path, text)
    assert user_organism(path).finetuned == "/f/ft"
    swapped = user_organism(path, None, None, "/new/adapter")
    assert (swapped.base, swapped.finetuned, swapped.adapter) == ("/f/base", None, "/new/adapter")


@pytest.mark.parametrize(
    ("text", "flags", "message"),
    [
        (TRUTH, (None, None, None), "names no base model"),
        ("description: d\nkey_fact: [x]\n", ("/b", "/f", None), r"unknown key\(s\) key_fact"),
        ("- a list\n", ("/b", "/f", None), "must hold a mapping"),
        ("description: d\nkey_facts: 3\n", ("/b", "/f", None), "ground_truth.key_facts"),
        ("description: d\n", ("/b", None, None), "exactly one of 'finetuned'"),
    ],
)
def test_bad_truth_files_say_what_to_fix(tmp_path: Path, text, flags, message) -> None:
    with pytest.raises(TruthError, match=message):
        user_organism(write(tmp_path, text), *flags)


def test_missing_truth_file(tmp_path: Path) -> None:
    with pytest.raises(TruthError, match="cannot read --truth"):
        user_organism(tmp_path / "nope.yaml", "/b", "/f")


def test_register_makes_the_pair_known(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIFFSCOPE_ORGANISMS", raising=False)
    org = user_organism(write(tmp_path, TRUTH), "/m/base", "/m/ft")
    path = register(org, tmp_path / "out" / "organisms")
    assert path.name == "my-pair.yaml"
    assert get_organism("my-pair").ground_truth == org.ground_truth
    monkeypatch.delenv("DIFFSCOPE_ORGANISMS")
    use_folder_organisms(tmp_path / "out")  # a resumed or re-graded folder
    assert get_organism("my-pair").base == "/m/base"
    use_folder_organisms(tmp_path / "out")
    assert os.environ["DIFFSCOPE_ORGANISMS"].count(os.pathsep) == 0  # added once


def test_bench_runs_a_user_pair_with_the_named_organisms(
    fake_organisms: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth = write(tmp_path, TRUTH)
    out = tmp_path / "bench"
    argv = ["bench", "--organisms", "alpha", "--agents", "blackbox", "--base", "/m/base"]
    argv += ["--finetuned", "/m/ft", "--truth", str(truth), "--max-tool-calls", "2"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["organisms"] == ["alpha", "my-pair"]
    assert (out / "organisms" / "my-pair.yaml").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert {r["organism"] for r in summary["runs"]} == {"alpha", "my-pair"}
    assert all(r["graded"] for r in summary["runs"])
    monkeypatch.setenv("DIFFSCOPE_ORGANISMS", str(fake_organisms))  # a fresh shell: grade again
    assert main(["grade", str(out), "--quiet"]) == 0


def test_bench_refuses_a_pair_without_truth(fake_organisms: Path, tmp_path: Path, capsys) -> None:
    argv = ["bench", "--base", "/m/base", "--finetuned", "/m/ft", "--out", str(tmp_path / "b")]
    assert main([*argv, "--quiet"]) == 2
    assert "needs --truth FILE" in capsys.readouterr().err


def test_investigate_target(tmp_path: Path) -> None:
    parser = build_parser()
    truth = write(tmp_path, TRUTH)
    args = parser.parse_args(["investigate", "--base", "/m/b", "--finetuned", "/m/f"])
    spec, org = investigate_target(args)
    assert (spec.base, spec.finetuned, org) == ("/m/b", "/m/f", None)
    args = parser.parse_args(
        ["investigate", "--base", "/m/b", "--adapter", "/m/a", "--truth", str(truth)]
    )
    spec, org = investigate_target(args)
    assert (spec.adapter, org.name if org else None) == ("/m/a", "my-pair")
    whole = write(
        tmp_path,
        "name: w\nkind: local\ntype: t\nbase: /w/b\nfinetuned: /w/f\nground_truth: {description: d}\n",
        "whole.yaml",
    )
    spec, org = investigate_target(parser.parse_args(["investigate", "--truth", str(whole)]))
    assert (spec.base, spec.finetuned) == ("/w/b", "/w/f")
    spec, org = investigate_target(parser.parse_args(["investigate", "sea_topic"]))
    assert spec.organism == "sea_topic" and org is None
    with pytest.raises(UserError, match="name an ORGANISM"):
        investigate_target(argparse.Namespace(**{**vars(args), "base": None, "truth": None}))


def test_organism_and_agent_lists_are_comma_separated() -> None:
    args = build_parser().parse_args(
        ["bench", "--organisms", "a,b", "--organisms", "c", "--agents", "blackbox, method"]
        + ["--out", "x"]
    )
    assert (args.organisms, args.agents) == (["a", "b", "c"], ["blackbox", "method"])
