"""The offline investigators know nothing of any zoo: an AST scan of `diffscope/agent/heuristic`
for imports of the corpus, the organisms or anything else of diffscope beyond llm, paths and
progress, and for any mention of organism YAML files or the built-in organism folder."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "diffscope" / "agent" / "heuristic"
ALLOWED = ("diffscope.llm", "diffscope.paths", "diffscope.progress", "diffscope.agent.heuristic")


def imports(tree: ast.AST) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


def test_heuristic_imports_nothing_of_the_zoo() -> None:
    bad: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for module, line in imports(tree):
            if module.startswith("diffscope") and not module.startswith(ALLOWED):
                bad.append(f"{path.name}:{line} imports {module}")
            if module in ("importlib", "yaml") or module.startswith(("importlib.", "yaml.")):
                bad.append(f"{path.name}:{line} imports {module}")
    assert not bad, bad


def test_heuristic_reads_no_organism_data() -> None:
    bad: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value.lower()
                if any(cue in text for cue in (".yaml", ".yml", "organisms/", "builtin/")):
                    bad.append(f"{path.name}:{node.lineno} {node.value[:60]!r}")
            if isinstance(node, ast.Name) and node.id in ("__import__",):
                bad.append(f"{path.name}:{node.lineno} dynamic import")
    assert not bad, bad
