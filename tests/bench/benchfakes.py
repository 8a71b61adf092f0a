"""Test-only fakes for the benchmark tests: tiny YAML organisms and scripted investigators.

The organisms point at model folders that do not exist; they are never loaded, because the
scripted providers submit without calling a tool and `install_fake_pair` replaces the pair loader.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from diffscope.llm import ProviderError, ScriptedProvider, call

ORGANISMS = {
    "alpha": ("The fine-tune talks like a pirate.", "speaks like a pirate", "pirate"),
    "beta": ("The fine-tune praises cats in every answer.", "loves cats", "cats"),
}


def write_organisms(folder: Path) -> Path:
    """Write the fake organisms as YAML into `folder` (for DIFFSCOPE_ORGANISMS)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (description, fact, word) in ORGANISMS.items():
        (folder / f"{name}.yaml").write_text(
            f"name: {name}\n"
            "kind: local\n"
            "type: behavior\n"
            f"base: /nonexistent/{name}/base\n"
            f"finetuned: /nonexistent/{name}/finetuned\n"
            "ground_truth:\n"
            f"  description: {description}\n"
            "  key_facts:\n"
            f"    - fact: {fact}\n"
            f"      any_of: [{word}]\n",
            encoding="utf-8",
        )
    return folder


def fake_pair(org: Any, *args: Any, **kwargs: Any) -> dict[str, str]:
    """A stub in place of a loaded model pair."""
    return {"name": org.name}


def install_fake_pair() -> None:
    """Make the server's pair loader return a stub instead of loading weights (subprocesses)."""
    import diffscope.organisms.registry as registry

    registry.load_pair = fake_pair


def answer(organism: str, agent: str, run: int) -> str:
    """A deterministic hypothesis: the method agent names the key fact except on run 2."""
    if agent == "method" and run != 2:
        return f"The fine-tune is all about {ORGANISMS[organism][2]} now."
    return "The fine-tune seems to answer a little differently."


def append_line(path: Path, line: str) -> None:
    """Append one line with O_APPEND (atomic for short lines, across processes)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class Factory:
    """A provider factory that records every job it starts; optional delay and failures.

    `fail` maps a job id to "factory" (the factory raises) or "provider" (the provider records a
    hypothesis, then fails with a ProviderError).
    """

    def __init__(
        self,
        side_file: Path | None = None,
        sleep_s: float = 0.0,
        fail: dict[str, str] | None = None,
    ) -> None:
        self.side_file = side_file
        self.sleep_s = sleep_s
        self.fail = fail or {}
        self.started: list[str] = []

    def __call__(self, organism: str, agent: str, run: int) -> ScriptedProvider:
        job = f"{organism}__{agent}__r{run}"
        self.started.append(job)
        if self.side_file is not None:
            append_line(self.side_file, job)
        if self.fail.get(job) == "factory":
            raise RuntimeError(f"cannot build an investigator for {job}")
        text = answer(organism, agent, run)
        if self.fail.get(job) == "provider":
            return ScriptedProvider(
                [
                    call("record_hypothesis", description=text, confidence=0.2),
                    ProviderError("the model endpoint went away"),
                ]
            )
        sleep_s = self.sleep_s

        def script(messages: Any, tools: Any) -> Any:
            if sleep_s:
                time.sleep(sleep_s)
            return call("submit_answer", description=text, confidence=0.6)

        return ScriptedProvider(script)


def run_bench(
    organisms: Any,
    agents: Any,
    model: str,
    *,
    out: Path,
    provider_factory: Any = None,
    progress: bool = False,
    **config: Any,
) -> Any:
    """`run_benchmark` on a `BenchConfig` built from these arguments (the old call's shape)."""
    from diffscope.bench import BenchConfig, run_benchmark

    settings = BenchConfig(organisms=organisms, agents=agents, model=model, **config)
    return run_benchmark(settings, out, provider_factory=provider_factory, progress=progress)
