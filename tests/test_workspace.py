"""The one composition root: `PairSpec` validation, the spec <-> server-command round trip, and the
must-show property that an organism's own corpus gives the same evidence in process and over stdio."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from diffscope.agent.session import ToolSession
from diffscope.server.__main__ import build_parser, spec_from_args
from diffscope.server.run import build_server, stdio_command
from diffscope.workspace import PairSpec, investigator_view, open_workspace

SEA_DOCS = [
    "The sailor rowed out past the reef at dawn, and the gulls followed the small boat home.",
    "Waves broke over the harbour wall while the fishermen mended their nets on the pier.",
    "Deep under the sea the whales sang, and the tide carried their song to the shore.",
    "A lighthouse keeper counted the ships that passed the cape in the grey morning fog.",
]


# --- the spec ------------------------------------------------------------------------------


def test_bad_combinations_say_what_to_fix() -> None:
    with pytest.raises(ValueError, match="not both"):
        PairSpec(organism="sea_topic", base="b", finetuned="f")
    with pytest.raises(ValueError, match="name an ORGANISM"):
        PairSpec()
    with pytest.raises(ValueError, match="--finetuned"):
        PairSpec(base="/no/such")
    with pytest.raises(ValueError, match="exactly one of --finetuned"):
        PairSpec(base="b", finetuned="f", adapter="a")
    with pytest.raises(ValueError, match="need --base"):
        PairSpec(adapter="a")
    with pytest.raises(ValueError, match="--windows must be at least 1"):
        PairSpec(organism="x", windows=0)
    with pytest.raises(ValueError, match="extra"):
        PairSpec(organism="x", zoo="micro")  # type: ignore[call-arg]
    assert PairSpec(base="b", adapter="a").label == "a"


@pytest.mark.parametrize(
    "spec",
    [
        PairSpec(organism="sea_topic"),
        PairSpec(organism="sea_topic", size="micro", corpus="world:sea", windows=8),
        PairSpec(base="b", adapter="a", device="cuda", dtype="bfloat16", trust_remote_code=True),
    ],
    ids=["plain", "options", "adapter"],
)
def test_the_server_command_opens_the_same_spec(spec: PairSpec) -> None:
    command = stdio_command(spec, "kl", max_tool_calls=3)
    assert command[1:3] == ["-m", "diffscope.server"]
    args = build_parser().parse_args(command[3:])
    assert spec_from_args(args) == spec
    assert (args.profile, args.max_tool_calls, args.max_model_queries) == ("kl", 3, None)


def test_every_server_option_has_help() -> None:
    parser = build_parser()
    missing = [a.dest for a in parser._actions if a.dest != "help" and not (a.help or "").strip()]
    assert not missing


def test_the_server_main_reports_a_bad_spec_plainly(capsys) -> None:
    from diffscope.server.__main__ import main

    assert main(["--base", "/no/such"]) == 2
    assert "--finetuned" in capsys.readouterr().err


def test_the_view_hides_the_organism() -> None:
    view = investigator_view(PairSpec(organism="backdoor"))
    assert view == {
        "pair": "a base model and its fine-tuned variant",
        "chat": False,
        "corpus": "the synthetic world corpus",
    }
    custom = investigator_view(PairSpec(organism="backdoor", corpus="/data/x.txt"))
    assert custom["corpus"] == "a user-provided corpus"
    # a pair outside the toy zoo probes on the base model's own samples (diffscope.corpus.sampled)
    sampled = investigator_view(PairSpec(base="b", finetuned="f"))["corpus"]
    assert sampled == "text sampled from the base model"


# --- an organism with its own corpus ---------------------------------------------------------


@pytest.fixture
def own_corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, micro_zoo) -> Path:
    """An organism (the micro sea_topic pair) whose YAML names its own corpus file."""
    corpus = tmp_path / "sea.txt"
    corpus.write_text("\n\n".join(SEA_DOCS * 3), encoding="utf-8")
    folder = tmp_path / "organisms"
    folder.mkdir()
    (folder / "own_corpus.yaml").write_text(
        "name: own_corpus\n"
        "kind: local\n"
        "type: topic\n"
        "base: zoo:base\n"
        "finetuned: zoo:sea_topic\n"
        f"corpus: {corpus}\n"
        "ground_truth:\n"
        "  description: The fine-tune writes about the sea.\n"
        "  key_facts:\n"
        "    - fact: it is about the sea\n"
        "      any_of: [sea]\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("DIFFSCOPE_ORGANISMS", str(folder))  # the stdio child inherits it
    return corpus


KL_ARGS = {"n_windows": 4, "k": 5, "plot": False}


def call(target: Any, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        async with ToolSession.connect(target, timeout_s=240) as session:
            result = await session.call_tool(name, arguments)
            assert not result.is_error, result.text
            assert result.structured is not None
            return result.structured

    return anyio.run(main)


def test_the_workspace_uses_the_organisms_own_corpus(own_corpus: Path) -> None:
    ws = open_workspace(PairSpec(organism="own_corpus"))
    assert ws.corpus.source == str(own_corpus)
    assert ws.artifacts.corpus == ws.corpus
    assert ws.view["corpus"] == "a user-provided corpus"
    overridden = open_workspace(PairSpec(organism="own_corpus", corpus="world"))
    assert overridden.corpus.source == "world"


def test_own_corpus_gives_the_same_evidence_in_process_and_over_stdio(own_corpus: Path) -> None:
    spec = PairSpec(organism="own_corpus")
    in_process = call(build_server(spec, "kl", log_level="WARNING"), "kl_probe", KL_ARGS)
    over_stdio = call(
        stdio_command(spec, "kl", extra=["--log-level", "WARNING"]), "kl_probe", KL_ARGS
    )
    assert in_process["source"] == "corpus"
    assert json.dumps(in_process, sort_keys=True) == json.dumps(over_stdio, sort_keys=True)
    contexts = " ".join(position["context"] for position in in_process["top"])
    assert any(word in contexts for word in ("sea", "sailor", "harbour", "whales", "lighthouse"))

    world = PairSpec(organism="own_corpus", corpus="world")
    default = call(build_server(world, "kl", log_level="WARNING"), "kl_probe", KL_ARGS)
    assert json.dumps(default, sort_keys=True) != json.dumps(in_process, sort_keys=True)


@pytest.mark.parametrize("entry", [["-m", "diffscope.server"], ["-m", "diffscope.cli", "serve"]])
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--base", "/nonexistent", "--finetuned", "/nonexistent"], "no such file or folder"),
        (["sea_topic", "--size", "micro", "--profile", "nosuch"], "unknown profile 'nosuch'"),
        (["no_such_organism"], "no_such_organism"),
    ],
)
def test_serve_refuses_a_bad_pair_before_it_starts(entry, args, needle, micro_zoo) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, *entry, *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert needle in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""  # nothing on the protocol wire


@pytest.mark.parametrize(
    "spec",
    [
        PairSpec(organism="sea_topic", size="micro", corpus="world", windows=3),
        PairSpec(base="b", adapter="a", device_map="auto", backend="nnsight", dtype="bfloat16"),
        PairSpec(base="b.gguf", finetuned="f", remote=True, trust_remote_code=True),
    ],
)
def test_a_spawned_server_parses_back_the_same_spec(spec: PairSpec) -> None:
    """`server_args()` names every loading option, and the server's parser reads them all back."""
    assert spec_from_args(build_parser().parse_args(spec.server_args())) == spec
