"""The import arrows of /work/shared/DESIGN.md ("Layout"), checked on the source with `ast`.

Every module of diffscope/ is parsed; every import counts (module level, inside functions, under
`if TYPE_CHECKING:`) for the package rules. A failure lists each offending edge as
`module -> module (line N)`, a worklist. Module-level import cycles count only the imports that run
when a module is imported (not function-local ones, not TYPE_CHECKING ones); a second check counts
function-local imports too, since one that closes a cycle only hides it (TYPE_CHECKING back-edges
are fine: they never run).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "diffscope"
PACKAGE = "diffscope"

# DESIGN.md, "Layout": `cli -> bench -> agent -> (MCP) -> server -> tools -> diffing -> models`,
# `bench -> graders -> organisms`, `agent, graders, diffing -> llm` (llm imports none of them);
# `workspace` only in the entry points; `diffing` never imports tools/server/agent; `agent` never
# imports organisms (it gets a spec and an MCP connection factory built by the entry point, so it
# imports no server, tools, graders, bench or workspace either). `paths`, `progress`, `corpus`
# and `llm` are shared leaves. Each key may import only the packages in its set (itself always).
ALLOWED: dict[str, set[str]] = {
    # shared leaves
    "paths": set(),
    "progress": {"paths"},
    "corpus": {"paths", "progress"},
    "llm": {"paths", "progress"},
    # the engine, bottom up
    "models": {"corpus", "paths", "progress"},
    "diffing": {"models", "corpus", "llm", "paths", "progress"},
    "tools": {"diffing", "models", "corpus", "llm", "paths", "progress"},
    "server": {"tools", "workspace", "pair_options", "paths", "progress"},
    # the investigator: an MCP client and an LLM, nothing of the engine, nothing of ground truth
    "agent": {"llm", "paths", "progress"},
    # ground truth and grading
    "organisms": {"models", "corpus", "paths", "progress"},
    "graders": {"organisms", "llm", "paths", "progress"},
    # the composition root and the entry points
    "workspace": {"organisms", "diffing", "models", "corpus", "paths", "progress"},
    "bench": {"agent", "graders", "organisms", "server", "workspace", "llm", "paths", "progress"},
    "desktop": {"paths", "progress"},
    "pair_options": set(),  # the pair's command-line options, argparse only
    "cli": {
        "bench",
        "agent",
        "graders",
        "organisms",
        "server",
        "tools",
        "diffing",
        "models",
        "corpus",
        "llm",
        "workspace",
        "pair_options",
        "desktop",
        "paths",
        "progress",
    },
    "__init__": set(),  # diffscope/__init__.py: the version, nothing else
}

# Packages only some modules may import: `workspace` is for the entry points.
ENTRY_ONLY: dict[str, tuple[str, ...]] = {
    "workspace": (
        "diffscope.cli",
        "diffscope.bench",
        "diffscope.server.__main__",
        "diffscope.server.run",
    ),
    "pair_options": ("diffscope.cli", "diffscope.server.__main__"),
}


MODULE, LOCAL, TYPING = (
    "module",
    "local",
    "typing",
)  # when an import runs: at import, in a call, never


@dataclass(frozen=True)
class Edge:
    """One import: `source` imports `target` at `line`; `when` is MODULE, LOCAL or TYPING."""

    source: str
    target: str
    line: int
    when: str

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line})"


def module_name(path: Path) -> str:
    """`diffscope.a.b` for diffscope/a/b.py, `diffscope.a` for diffscope/a/__init__.py."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def discover() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def top(module: str) -> str:
    """The top-level package (or module) of a diffscope module; `__init__` for `diffscope`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]
) -> list[str]:
    """The diffscope modules an import statement names (a submodule when `from X import sub`)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == PACKAGE]
    if node.level:
        base = module.split(".")
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        origin = ".".join(base + ([node.module] if node.module else []))
    else:
        origin = node.module or ""
    if origin.split(".")[0] != PACKAGE:
        return []
    found = []
    for alias in node.names:
        sub = f"{origin}.{alias.name}"
        found.append(sub if sub in modules else origin)
    return list(dict.fromkeys(found))


def imports(module: str, path: Path, modules: set[str]) -> list[Edge]:
    """Every diffscope import of one module, with when it runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    edges: list[Edge] = []

    def visit(node: ast.AST, when: str) -> None:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target in _targets(node, module, is_package, modules):
                edges.append(Edge(module, target, node.lineno, when))
            return
        if when == MODULE and isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            when = LOCAL
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, TYPING)
            for child in node.orelse:
                visit(child, when)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, when)

    visit(tree, MODULE)
    return edges


def all_edges() -> list[Edge]:
    modules = discover()
    names = set(modules)
    return [e for name, path in modules.items() for e in imports(name, path, names)]


def check(title: str, bad: list[Edge]) -> None:
    """Fail with the worklist of offending edges, one `module -> module (line N)` a line."""
    if bad:
        pytest.fail(f"{title} ({len(bad)}):\n  " + "\n  ".join(map(str, bad)), pytrace=False)


def entry_allowed(target_top: str, source: str) -> bool:
    """Whether `source` may import an entry-only package."""
    return any(source == m or source.startswith(m + ".") for m in ENTRY_ONLY[target_top])


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


# --- the checker itself ---------------------------------------------------------------------


def test_the_checker_sees_function_local_and_type_checking_imports(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import diffscope.paths\n"
        "from . import base\n"
        "if TYPE_CHECKING:\n"
        "    from diffscope.tools import Budget\n"
        "def f():\n"
        "    from diffscope.server import create_server\n"
    )
    path = tmp_path / "mod.py"
    path.write_text(source)
    modules = {"diffscope.paths", "diffscope.agent.base", "diffscope.tools", "diffscope.server"}
    edges = imports("diffscope.agent.mod", path, modules)
    assert [(e.target, e.line, e.when) for e in edges] == [
        ("diffscope.paths", 2, MODULE),
        ("diffscope.agent.base", 3, MODULE),
        ("diffscope.tools", 5, TYPING),
        ("diffscope.server", 7, LOCAL),
    ]


def test_tarjan_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert [c for c in strongly_connected(graph) if len(c) > 1] == [["a", "b", "c"]]


def test_the_rules_on_sample_edges() -> None:
    assert allowed(Edge("diffscope.server.run", "diffscope.workspace", 1, MODULE))
    assert allowed(Edge("diffscope.bench.runner", "diffscope.workspace", 1, LOCAL))
    assert not allowed(Edge("diffscope.server.app", "diffscope.workspace", 1, MODULE))
    assert not allowed(Edge("diffscope.tools.kl", "diffscope.workspace", 1, LOCAL))
    assert not allowed(Edge("diffscope.diffing.kl", "diffscope.tools", 1, TYPING))
    assert not allowed(Edge("diffscope.agent.loop", "diffscope.organisms", 1, LOCAL))
    assert not allowed(Edge("diffscope.llm.base", "diffscope.agent", 1, TYPING))
    assert allowed(Edge("diffscope.graders.rubric", "diffscope.llm", 1, MODULE))
    assert allowed(Edge("diffscope.bench.config", "diffscope", 1, MODULE))


def test_the_allowed_arrows_are_acyclic() -> None:
    cycles = [c for c in strongly_connected(ALLOWED) if len(c) > 1]
    assert not cycles, f"DESIGN arrows must point one way: {cycles}"


# --- the rules on diffscope/ ----------------------------------------------------------------


def test_every_top_level_package_has_its_arrows() -> None:
    missing = sorted({top(m) for m in discover()} - set(ALLOWED))
    assert not missing, f"add these to ALLOWED in tests/test_architecture.py: {missing}"


def allowed(edge: Edge) -> bool:
    """Whether one import follows `ALLOWED` and `ENTRY_ONLY`."""
    source, target = top(edge.source), top(edge.target)
    if source == target or target == "__init__":  # `from diffscope import __version__`
        return True
    if target not in ALLOWED.get(source, set()):
        return False
    return target not in ENTRY_ONLY or entry_allowed(target, edge.source)


def test_imports_follow_the_design_arrows() -> None:
    check("imports against the DESIGN.md arrows", [e for e in all_edges() if not allowed(e)])


def test_llm_imports_nothing_above_it() -> None:
    above = {"agent", "graders", "diffing", "tools", "server", "bench", "organisms"}
    above |= {"cli", "workspace", "models", "corpus"}
    bad = [e for e in all_edges() if top(e.source) == "llm" and top(e.target) in above]
    check("llm must stay at the base", bad)


def test_no_cycles_between_top_level_packages() -> None:
    edges = [e for e in all_edges() if top(e.source) != top(e.target)]
    graph: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        graph[top(e.source)].add(top(e.target))
    cycles = [set(c) for c in strongly_connected(graph) if len(c) > 1]
    bad = [e for e in edges for c in cycles if top(e.source) in c and top(e.target) in c]
    check(f"package cycles {[sorted(c) for c in cycles]}", bad)


def _module_cycles(kinds: set[str]) -> list[Edge]:
    edges = [e for e in all_edges() if e.when in kinds and e.source != e.target]
    graph: dict[str, set[str]] = defaultdict(set)
    for e in edges:
        graph[e.source].add(e.target)
    cycles = [set(c) for c in strongly_connected(graph) if len(c) > 1]
    return [e for e in edges for c in cycles if e.source in c and e.target in c]


def test_no_module_level_import_cycles() -> None:
    bad = _module_cycles({MODULE})
    check("module-level import cycles", bad)


def test_no_import_cycle_hidden_in_a_function() -> None:
    bad = _module_cycles({MODULE, LOCAL})
    check("import cycles closed by a function-local import", bad)
