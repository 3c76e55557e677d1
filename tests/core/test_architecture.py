"""The shape of the code: no import cycle among QTasks' modules, function-local imports
included (a cycle hidden in a function is still one: it ties every module on it to
every other), and the contract package never imports the runtime."""

from __future__ import annotations

import ast
from pathlib import Path

import qtasks_core
import qtasks_hooks

PACKAGES = ("qtasks_core", "qtasks_hooks")
ROOT = Path(qtasks_core.__file__).parent.parent


def _modules() -> dict[str, Path]:
    out = {}
    for package in (qtasks_core, qtasks_hooks):
        base = Path(package.__file__).parent
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The QTasks modules ``name`` imports when it runs: anywhere in the file, except
    under ``if TYPE_CHECKING:`` (read by type checkers only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(sub) for sub in ast.walk(node))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                child = f"{target}.{alias.name}"
                found.add(child if child in modules else target)
    return {m for m in found if m in modules and m != name}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_no_module_imports_itself_back_through_others() -> None:
    assert _cycles(_graph()) == []


def test_the_walk_sees_function_local_imports() -> None:
    """The check would pass vacuously if it missed the imports that made the old cycle."""
    graph = _graph()
    assert "qtasks_core._current" in graph["qtasks_core.schemas"]
    assert "qtasks_core.app" in graph["qtasks_core.testcase"]  # imported inside a function
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_the_contract_never_imports_the_runtime() -> None:
    graph = _graph()
    reaching = {
        name: sorted(m for m in targets if m.startswith("qtasks_core"))
        for name, targets in graph.items()
        if name.startswith("qtasks_hooks")
    }
    assert {name: targets for name, targets in reaching.items() if targets} == {}
