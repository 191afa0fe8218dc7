"""The package layering: every module imports only packages below its own, and no import circle.

Read from the source with ``ast`` (module-level and function-level imports alike), so an import
hidden inside a function counts too.
"""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "sparsetime"
#: lower rank = lower layer; a package may import its own modules and packages of lower rank
RANKS = {"fileio": 0, "core": 0,
         "kernels": 1, "nn": 2, "pruning": 3, "models": 3, "data": 3, "train": 4, "experiments": 5,
         "integrations": 5, "cli": 6, "__main__": 7}
MAX_LINES = 420


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Fully qualified ``sparsetime.*`` modules imported anywhere in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("sparsetime"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("sparsetime"):
                continue
            found.add(target)
            for alias in node.names:  # ``from . import nn`` names a module
                candidate = f"{target}.{alias.name}"
                if (SRC.parent / Path(*candidate.split("."))).with_suffix(".py").is_file() or \
                        (SRC.parent / Path(*candidate.split("."))).is_dir():
                    found.add(candidate)
    return found


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_down(module):
    own = _layer(module)
    if own is None:  # the package root wires the layers together
        return
    for target in _imports(MODULES[module]):
        other = _layer(target)
        if other is None or other == own:
            continue
        assert RANKS[other] < RANKS[own], f"{module} imports {target}: {own} may not import {other}"


def test_no_import_circle():
    graph = {m: {t for t in _imports(p) if t in MODULES and t != m and _layer(t) is not None}
             for m, p in MODULES.items() if _layer(m) is not None}
    # a package's __init__ re-exporting its modules is not a circle through them
    graph = {m: {t for t in ts if not (m.startswith(t + ".") and t in MODULES and
                                       MODULES[t].name == "__init__.py")} for m, ts in graph.items()}
    visiting, done, circles = set(), set(), []

    def visit(node, path):
        visiting.add(node)
        for nxt in graph.get(node, ()):
            if nxt in visiting:
                circles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in done:
                visit(nxt, path + [nxt])
        visiting.discard(node)
        done.add(node)

    for m in graph:
        if m not in done:
            visit(m, [m])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_file_is_too_long(module):
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by job"
