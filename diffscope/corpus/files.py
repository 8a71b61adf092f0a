"""Loading text corpora: .txt and .jsonl files, folders of them, and the `world` corpus specs."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from diffscope.corpus.world import TOPICS, world_corpus

SUFFIXES = (".txt", ".jsonl")
_BLANK_LINES = re.compile(r"\n[ \t\r]*\n")
_HELP = (
    "give a .txt file (documents separated by blank lines), a .jsonl file (one object per line "
    "with a 'text' field or a chat 'messages' list), a folder of such files, or 'world'"
)


def _load_txt(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    return [doc.strip() for doc in _BLANK_LINES.split(text) if doc.strip()]


def render_messages(messages: list[Any]) -> str:
    """A chat `messages` list ([{role, content}, ...]) as `User:`/`Assistant:` lines."""
    lines = []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise ValueError("each message must be an object with a string 'content'")
        role = str(message.get("role", "user")).lower()
        speaker = {"user": "User", "assistant": "Assistant", "system": "System"}.get(
            role, role.capitalize()
        )
        lines.append(f"{speaker}: {message['content'].strip()}")
    return "\n".join(lines)


def _load_jsonl(path: Path) -> list[str]:
    docs: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"{path}, line {number}: not valid JSON ({error.msg}); each line must be "
                    "one JSON object with a 'text' field or a 'messages' list"
                ) from None
            if isinstance(record, dict) and isinstance(record.get("text"), str):
                text = record["text"].strip()
            elif isinstance(record, dict) and isinstance(record.get("messages"), list):
                try:
                    text = render_messages(record["messages"])
                except ValueError as error:
                    raise ValueError(f"{path}, line {number}: {error}") from None
            else:
                raise ValueError(
                    f"{path}, line {number}: expected an object with a string 'text' field or a "
                    "'messages' list of {role, content} objects"
                )
            if text:
                docs.append(text)
    return docs


def _load_file(path: Path) -> list[str]:
    if path.suffix == ".txt":
        return _load_txt(path)
    if path.suffix == ".jsonl":
        return _load_jsonl(path)
    raise ValueError(f"unsupported corpus file {path} (suffix {path.suffix!r}); {_HELP}")


def load_texts(path: str | os.PathLike[str]) -> list[str]:
    """The documents of a .txt or .jsonl file, or of all such files under a folder (sorted)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"corpus not found: {root}; {_HELP}")
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise ValueError(f"no .txt or .jsonl files in folder {root}; {_HELP}")
        docs = [doc for file in files for doc in _load_file(file)]
    else:
        docs = _load_file(root)
    if not docs:
        raise ValueError(f"corpus {root} holds no documents (it is empty); {_HELP}")
    return docs


def resolve_corpus(spec: str | None, n_docs: int = 2000, seed: int = 0) -> list[str]:
    """Documents for a corpus spec: None or "world", "world:TOPIC[,TOPIC...]", or a path."""
    if spec is None or spec.strip() == "world":
        return world_corpus(n_docs, seed)
    spec = spec.strip()
    if spec.startswith("world:"):
        topics = [name.strip() for name in spec[len("world:") :].split(",") if name.strip()]
        unknown = [name for name in topics if name not in TOPICS]
        if not topics or unknown:
            raise ValueError(
                f"bad corpus spec {spec!r}: unknown topic(s) {unknown or '(none given)'}; "
                f"use world:TOPIC with TOPIC among {', '.join(sorted(TOPICS))}"
            )
        return world_corpus(n_docs, seed, topics=topics)
    if spec == "sampled" or spec.startswith("sampled:"):
        raise ValueError(
            f"corpus {spec!r} is sampled from a pair's base model: build it with "
            "diffscope.diffing.probe.probe_windows(pair, spec), not from text alone"
        )
    return load_texts(spec)
