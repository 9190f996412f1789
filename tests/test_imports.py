"""The import graph of `assistant` and `ingest` has no cycle, counting imports inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("assistant", "ingest")


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """Each module of the packages -> the modules of the packages it imports anywhere in its code."""
    files = {module_name(path, root): path for package in PACKAGES for path in (root / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
        graph[name] = {target for target in targets if target in files and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (the first repeated at the end), or None."""
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> list[str] | None:
        if name in path:
            return path[path.index(name) :] + [name]
        if name in done:
            return None
        for target in sorted(graph[name]):
            cycle = visit(target, [*path, name])
            if cycle:
                return cycle
        done.add(name)
        return None

    return next((cycle for name in sorted(graph) if (cycle := visit(name, []))), None)


def test_the_packages_import_each_other_without_a_cycle() -> None:
    assert find_cycle(import_graph()) is None


def test_a_cycle_through_an_import_inside_a_function_is_found(tmp_path: Path) -> None:
    """The check itself: the eval.py <-> report.py cycle, one side imported late inside a function, is found."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "assistant" / "eval.py").write_text("def run():\n    from assistant.report import write\n")
    (tmp_path / "assistant" / "report.py").write_text("from assistant.eval import run\n")
    assert find_cycle(import_graph(tmp_path)) == ["assistant.eval", "assistant.report", "assistant.eval"]
