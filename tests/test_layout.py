"""The package's layers: nothing in ``bench/`` imports ``methods/``, no lower floor imports a higher one, no cycles."""

import ast
from pathlib import Path

import bench

ROOT = Path(bench.__file__).resolve().parent
# floor of each sub-package; a module may import its own floor and the floors below it
FLOORS = {"core": 0, "data": 1, "nn": 1, "eval": 2, "sid": 3, "run": 4, "report": 5, "_recipes": 0}
TOP = 6  # bench/cli.py, bench/builtins.py, bench/__main__.py


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _nodes(tree: ast.AST):
    """Every node, leaving out ``if TYPE_CHECKING:`` blocks (annotations only, never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            continue
        yield node
        yield from _nodes(node)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (function-level imports too)."""
    found = set()
    for node in _nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _floor(module: str) -> int:
    parts = module.split(".")
    return FLOORS.get(parts[1], TOP) if len(parts) > 1 else 0  # ``bench`` itself holds only the version


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_bench_never_imports_methods():
    offenders = {_module(p): sorted(m for m in _imports(p) if m.split(".")[0] == "methods") for p in ROOT.rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_floor_imports_a_higher_one():
    upward = [(name, dep) for name, deps in _graph().items() for dep in deps if _floor(dep) > _floor(name)]
    assert upward == []


def test_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(path[path.index(dep):] + [dep] if dep in path else [node, dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []
