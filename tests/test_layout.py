"""The layout's rules, read from the imports: which part may use which, and no circles.

The README draws the harness as layers (commands over run and reporting, those over
drivers and the store, everything over the domain and util) and says the harness
reaches the product only over the wire. A new import that breaks either is caught
here, with the line that broke it, instead of in a review.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: What each part of the harness may import of the harness (besides itself).
ALLOWED = {
    "util": set(),
    "domain": set(),
    "store": {"util"},
    "targets": {"domain", "util"},
    "catalog": {"domain", "util", "targets"},
    "credentials": {"util"},
    "drivers": {"domain", "util"},
    "reporting": {"domain", "store", "util"},
    "run": {"domain", "store", "util", "catalog", "credentials", "targets"},
    "commands": {
        "run",
        "reporting",
        "drivers",
        "store",
        "catalog",
        "credentials",
        "domain",
        "util",
        "commands",
        "targets",
    },
    "cli": {"commands", "util"},
}
#: The modules that import the product: they start it (`serve`, and the embedded one of the default run).
PRODUCT_STARTERS = {"persona_runner/commands/product.py", "persona_runner/commands/serve.py"}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """Every module `path` imports, at any depth (lazy imports inside functions count too)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def _part(path: Path) -> str:
    """The part of the harness a file belongs to: its folder under persona_runner, or its own name."""
    relative = path.relative_to(ROOT / "persona_runner")
    return relative.parts[0] if len(relative.parts) > 1 else relative.stem


def _harness_files() -> list[Path]:
    return sorted(p for p in (ROOT / "persona_runner").rglob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", _harness_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_part_imports_only_the_parts_below_it(path: Path) -> None:
    part = _part(path)
    allowed = ALLOWED[part] | {part}
    wrong = []
    for line, module in _imports(path):
        names = module.split(".")
        if names[0] == "persona_runner" and len(names) > 1:
            imported = names[1] if names[1] != "__init__" else part
            if imported not in allowed:
                wrong.append(f"line {line}: {module}")
        elif names[0] == "tool_registry" and str(path.relative_to(ROOT)) not in PRODUCT_STARTERS:
            wrong.append(f"line {line}: {module} (the product is reached over HTTP and MCP)")
    assert not wrong, f"{path.relative_to(ROOT)} ({part}) may import only {sorted(allowed)}: {wrong}"


def _cycles(root: Path, package: str) -> list[list[str]]:
    """Import circles among the modules of `root / package` (a depth-first search over the import graph)."""
    modules = {
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): p
        for p in (root / package).rglob("*.py")
    }
    graph = {
        name: {
            target
            for _, imported in _imports(path)
            for target in (imported, imported.rsplit(".", 1)[0])
            if target in modules and target != name
        }
        for name, path in modules.items()
    }
    found: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                found.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return found


@pytest.mark.parametrize("package", ["persona_runner", "tool_registry"])
def test_no_import_circles(package: str) -> None:
    assert _cycles(ROOT, package) == []


def test_a_circle_is_found_when_there_is_one(tmp_path: Path) -> None:
    """The circle finder itself: two modules importing each other are reported."""
    package = tmp_path / "loop"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from loop.b import x\n")
    (package / "b.py").write_text("def f():\n    import loop.a\n")
    assert _cycles(tmp_path, "loop") == [["loop.a", "loop.b", "loop.a"]]
