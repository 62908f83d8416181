"""The package's import graph: no cycles, counting imports inside functions, and imports only go down."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "avlib"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each avlib module -> the avlib modules it imports anywhere in its body (functions included)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                # ``from avlib.data import world`` imports the submodule avlib.data.world
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target.startswith("avlib") and target != name and target not in (package, "avlib"):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_function_level_imports() -> None:
    graph = import_graph()
    assert "avlib.train" in graph["avlib.tasks.pretrain"]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


def test_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


def test_imports_only_go_down() -> None:
    # lower layers never import the task, app or report layers above them
    graph = import_graph()
    lower = [name for name in graph if name.count(".") and name.split(".")[1] in ("io", "writer", "data", "models", "spectral", "losses",
                                                                 "metrics", "stats", "train", "checkpoint", "config")]
    upper = ("avlib.tasks", "avlib.report", "avlib.notebooks", "avlib.localize", "avlib.separate")
    wrong = sorted(f"{name} -> {target}" for name in lower for target in graph[name] if target.startswith(upper))
    assert wrong == []


#: A task may import the task whose product it starts from: every task starts from the pretrained network,
#: the ablations from the separation's test list, training and ``full`` row.
BUILDS_ON = {"avlib.tasks.ablations": {"avlib.tasks.separation"}}


def test_task_modules_do_not_import_each_other() -> None:
    graph = import_graph()
    sideways = sorted(f"{name} -> {target}" for name in graph if name.startswith("avlib.tasks.")
                      for target in graph[name]
                      if target.startswith("avlib.tasks.")
                      and target not in ("avlib.tasks.cli", "avlib.tasks.pretrain", *BUILDS_ON.get(name, ())))
    assert sideways == []
