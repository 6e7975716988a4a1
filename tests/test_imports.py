"""Importing glasswork: every public name from the package root, lazy names visible to type
checkers, a light import, and no import cycles between modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import glasswork
import glasswork.jobs

SRC = Path(glasswork.__file__).resolve().parent


def test_the_workers_page_imports_work_from_the_package_root() -> None:

    assert set(glasswork.jobs.__all__) <= set(glasswork.__all__)
    for name in glasswork.__all__:
        assert getattr(glasswork, name) is not None


def test_lazy_names_are_listed_and_visible_to_type_checkers() -> None:
    lazy = set(glasswork.jobs._LAZY)
    assert lazy <= set(glasswork.jobs.__all__)
    for path in (SRC / "__init__.py", SRC / "jobs" / "__init__.py"):
        tree = ast.parse(path.read_text())
        checked = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
            for stmt in node.body
            if isinstance(stmt, ast.ImportFrom)
            for alias in stmt.names
        }
        assert lazy <= checked, path


@pytest.mark.subprocess
def test_import_glasswork_stays_light() -> None:
    code = (
        "import sys, glasswork; "
        "print(sorted(m for m in ('boto3', 'aiobotocore', 'croniter') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _imports(path: Path, package: str) -> set[str]:
    """Modules of the package that ``path`` imports at module level, TYPE_CHECKING included
    (imports inside functions are deliberate lazy loads and are left out)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    body = list(tree.body)
    while body:
        node = body.pop()
        if isinstance(node, ast.If):
            body.extend(node.body)
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")
            if node.level > 1:
                base = base[: -(node.level - 1)]
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if node.module is None:
                found.update(f"{target}.{a.name}" for a in node.names)
            else:
                found.add(target)
    return found


@pytest.mark.slow
def test_no_import_cycles_between_modules() -> None:
    modules: dict[str, Path] = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = {m for m in _imports(path, package) if m in modules and m != name}
    # Packages re-export their modules by design; a cycle through an __init__ is not one.
    inits = {n for n, p in modules.items() if p.name == "__init__.py"}

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycle = [*stack[stack.index(node) :], node]
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")
        for nxt in graph[node] - inits:
            visit(nxt, [*stack, node])

    for name in modules:
        if name not in inits:
            visit(name, [])
