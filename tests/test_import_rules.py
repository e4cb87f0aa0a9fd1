"""The package's floors point down only (DESIGN.md, README "Architecture"), read from the source
with the standard library's `ast`:

- no module imports a module on a higher floor, not even inside a function;
- no two modules import each other, directly or around a longer circle;
- an import inside a function says why on its line or the line above ("deferred: ...");
  start-up time and optional dependencies are reasons, dodging a circle is not;
- no file of the package is longer than MAX_LINES.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "diffusionforge"
MAX_LINES = 420

# Floor of each top-level part of the package; a module may import its own floor and below.
FLOORS = {
    "errors": 0,
    "limits": 0,
    "core": 0,
    "nets": 1,
    "data": 1,
    "eval": 1,
    "plot": 1,
    "train": 2,
    "assets": 2,
    "pipelines": 3,
    "modalities": 5,
    "server": 5,
    "demo": 6,
    "cli": 6,
    "__main__": 7,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def floor(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:  # the package's own __init__: `diffusionforge.load` reaches every floor
        return FLOORS["cli"]
    return FLOORS[_part(module)]


def _part(module: str) -> str:
    return module.split(".")[1]


def _target(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for each import of the package's own."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only: never imported at run time
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            names: list[str] = []
            if isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                if child.module.split(".")[0] == "diffusionforge":
                    names = [f"{child.module}.{a.name}" for a in child.names]
            elif isinstance(child, ast.Import):
                names = [a.name for a in child.names if a.name.split(".")[0] == "diffusionforge"]
            for name in names:
                target = _target(name)
                if target and target != module:
                    out.append((target, child.lineno, in_function))
            visit(child, inner)

    visit(tree, False)
    return out


GRAPH = {m: imports(m) for m in MODULES}


def test_every_module_has_a_floor():
    unknown = sorted({_part(m) for m in MODULES if "." in m} - set(FLOORS))
    assert not unknown, f"give these a floor in FLOORS: {unknown}"


def test_no_import_points_up_a_floor():
    up = [
        f"{MODULES[m].relative_to(PACKAGE.parent)}:{line} imports {t} (floor {floor(t)} > "
        f"{floor(m)})"
        for m, edges in GRAPH.items()
        for t, line, _ in edges
        if floor(t) > floor(m) and t != "diffusionforge"  # the package itself: __version__
    ]
    assert not up, "\n".join(up)


def test_no_import_circle():
    # Tarjan's strongly connected components over every import, deferred ones included
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w, _, _ in GRAPH[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            connect(v)
    assert not cycles, "import circles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_deferred_imports_say_why():
    silent = []
    for m, edges in GRAPH.items():
        lines = MODULES[m].read_text().splitlines()
        for _, line, deferred in edges:
            if deferred and "deferred" not in _comment_above(lines, line):
                silent.append(f"{MODULES[m].relative_to(PACKAGE.parent)}:{line}")
    assert not silent, "imports inside functions without a '# deferred: why' comment:\n" + (
        "\n".join(sorted(set(silent)))
    )


def _comment_above(lines: list[str], line: int) -> str:
    """The import's line and the comment above its run of import lines (one comment may
    explain a block of deferred imports, blank lines between its groups included)."""
    i = line - 1  # 0-based index of the import's first line
    text = lines[i]
    while i > 0:
        above = lines[i - 1].strip()
        if above.startswith("#"):
            return text + above
        if above and not (above.startswith(("from ", "import ", ")")) or above.endswith(",")):
            return text
        i -= 1
    return text


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_files_stay_readable_in_one_sitting(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PACKAGE.parent)}: {n} lines (split it)"


def test_the_rules_catch_what_they_claim():
    """The checks themselves: an upward edge and a circle planted in a copy of the graph."""
    assert floor("diffusionforge.train.previews") > floor("diffusionforge.core.draw")
    assert floor("diffusionforge.pipelines.images") > floor("diffusionforge.train.config")
    assert _target("diffusionforge.core.plan.Plan") == "diffusionforge.core.plan"
    assert _target("diffusionforge.nothing_here") == "diffusionforge"
