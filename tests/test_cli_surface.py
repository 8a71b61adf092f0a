"""The command line as one surface: help text on every option, comma-separated lists everywhere,
quiet broken pipes, model errors that list the choices, and files written with the user's umask."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffscope.cli import build_parser, main


def walk(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()):
    """Every (command words, parser) pair of the argparse tree."""
    yield words, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from walk(child, (*words, name))


def test_every_option_of_every_command_has_help() -> None:
    missing = []
    commands = 0
    for words, parser in walk(build_parser()):
        commands += 1
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                name = "/".join(action.option_strings) or action.dest
                missing.append(f"diffscope {' '.join(words)} {name}")
    assert commands >= 14
    assert not missing, "options without help text:\n" + "\n".join(missing)


def test_capabilities_is_a_command() -> None:
    args = build_parser().parse_args(["crosscoder", "capabilities", "music_lora", "--json"])
    assert args.func.__name__ == "cmd_crosscoder_capabilities" and args.json


def test_list_options_are_comma_separated_and_may_repeat() -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["bench", "--out", "x", "--organisms", "a,b", "--organisms", "c", "--agents", "blackbox,m"]
    )
    assert args.organisms == ["a", "b", "c"] and args.agents == ["blackbox", "m"]
    assert parser.parse_args(["bench", "--out", "x"]).agents is None  # the registry's default
    assert parser.parse_args(["zoo", "build", "--only", "sea_topic, music_lora"]).only == [
        "sea_topic",
        "music_lora",
    ]
    with pytest.raises(SystemExit):
        parser.parse_args(["zoo", "build", "--only", ","])


@pytest.mark.parametrize("extra", [["--json"], []], ids=["json", "table"])
def test_a_closed_pipe_exits_quietly(extra: list[str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "diffscope.cli", "organisms", "list", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away before the command writes anything (`| head`)
    stderr = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
    assert "Exception ignored" not in stderr
    assert proc.returncode != 0


def test_head_of_a_pipe_gets_its_line() -> None:
    proc = subprocess.run(
        f"{sys.executable} -m diffscope.cli organisms list --json | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip() == "[" and "Traceback" not in proc.stderr


def test_an_unknown_model_lists_the_choices(tmp_path: Path, capsys) -> None:
    code = main(["bench", "--out", str(tmp_path / "b"), "--model", "nosuch"])
    text = capsys.readouterr().err
    assert code == 2 and "heuristic" in text and "openai/MODEL" in text
    assert "\n" not in text.strip()  # one line
    code = main(["investigate", "sea_topic", "--model", "nosuch"])
    assert code == 2 and "heuristic" in capsys.readouterr().err


def test_a_missing_key_names_the_environment_variable(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    code = main(["bench", "--out", str(tmp_path / "b"), "--model", "openai/gpt-5"])
    text = capsys.readouterr().err
    assert code == 2 and "OPENAI_API_KEY" in text and "api_key=" not in text


def test_bad_settings_are_one_plain_line(tmp_path: Path, capsys) -> None:
    code = main(["bench", "--out", str(tmp_path / "b"), "--runs", "0"])
    text = capsys.readouterr().err.strip()
    assert code == 2 and text == "error: runs must be a whole number of at least 1, not 0"


def test_files_are_written_with_the_users_umask(tmp_path: Path) -> None:
    import torch

    from diffscope.paths import save_tensors, write_json, write_text

    old = os.umask(0o022)
    try:
        files = [
            write_json(tmp_path / "a.json", {"x": 1}),
            write_text(tmp_path / "sub" / "b.md", "hello"),
            save_tensors(tmp_path / "c.safetensors", {"t": torch.zeros(2)}),
        ]
        os.umask(0o077)
        private = write_text(tmp_path / "private.txt", "secret")
    finally:
        os.umask(old)
    assert [oct(p.stat().st_mode & 0o777) for p in files] == ["0o644"] * 3
    assert oct(private.stat().st_mode & 0o777) == "0o600"


def test_bench_builds_one_config_with_the_failed_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import diffscope.bench as bench
    import diffscope.cli as cli

    seen = {}

    def fake_run(config, out, **kw):
        seen["config"], seen["out"] = config, out
        raise cli.UserError("stop here")

    monkeypatch.setattr(bench, "run_benchmark", fake_run)
    monkeypatch.setattr(
        cli.commands,
        "built_checks",
        lambda names: {"sea_topic": (False, "the sea fact was not learned")},
    )
    argv = ["bench", "--out", str(tmp_path), "--organisms", "sea_topic,music_lora", "--runs", "2"]
    assert main(argv) == 2 and "stop here" in capsys.readouterr().err
    config = seen["config"]
    assert isinstance(config, bench.BenchConfig)
    assert (config.organisms, config.agents, config.runs) == (
        ["sea_topic", "music_lora"],
        ["blackbox", "method"],
        2,
    )
    assert config.excluded() == {"sea_topic": "the sea fact was not learned"}
    assert main([*argv, "--include-failed"]) == 2
    assert seen["config"].include_failed and seen["config"].excluded() == {}
