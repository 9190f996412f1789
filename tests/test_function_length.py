"""No function in `assistant` or `ingest` runs over `MAX_LINES` lines unless its docstring says why it is long."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("assistant", "ingest")
# A function a reader cannot take in at once; past this it is split, or its docstring says why it is long.
MAX_LINES = 60
_SAYS_WHY = re.compile(r"\blong\b", re.IGNORECASE)


def long_functions(root: Path = REPO, max_lines: int = MAX_LINES) -> list[str]:
    """`path:line name (N lines)` for each function (methods and nested ones too) over `max_lines` lines, from its
    `def` to its last line, whose docstring does not say why it is long (with the word "long")."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > max_lines and not _SAYS_WHY.search(ast.get_docstring(node) or ""):
                    found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_no_function_is_long_without_saying_why() -> None:
    assert long_functions() == []


@pytest.mark.parametrize(
    ("docstring", "flagged"),
    [
        ("", True),
        ('"""Build the page."""', True),
        ('"""Build the page. Long: one Gradio layout block, which cannot be split."""', False),
    ],
)
def test_a_long_function_is_found_unless_its_docstring_says_why(tmp_path: Path, docstring: str, flagged: bool) -> None:
    """The check itself: a 61-line method inside a class is flagged, a 60-line one is not."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()

    def method(name: str, lines: int) -> str:
        head = [f"    def {name}(self):", *([f"        {docstring}"] if docstring else [])]
        return "\n".join(head + [f"        x{i} = {i}" for i in range(lines - len(head))]) + "\n"

    (tmp_path / "assistant" / "ui.py").write_text(
        "class Page:\n" + method("fits", MAX_LINES) + method("build", MAX_LINES + 1)
    )
    assert long_functions(tmp_path) == (["assistant/ui.py:62 build (61 lines)"] if flagged else [])
