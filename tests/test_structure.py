"""The package's structure, read from its imports: stages import downwards only, imports sit at the
top of modules (lazy only in the command line, for start-up time), and the code passes ruff's
pyflakes and import-order checks."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "trackstudy"

#: Rank of each part of the package (trackstudy/__init__.py draws the same order): a module may
#: import its own part and parts of a lower rank only.
RANK = {
    "errors": 0, "config": 1, "device": 1, "kinematics": 1,
    "data": 2,
    "metrics": 3, "baselines": 3,
    "locality": 4,
    "graphs": 5,
    "models": 6,
    "postprocessing": 7,
    "training": 8, "inference": 8,
    "bench": 9,
    "study": 10,
    "plots": 11,
    "cli": 12, "__main__": 13,
}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "trackstudy"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        yield path, name, ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree):
    """(module imported, node, at top level?) of every trackstudy import in ``tree``."""
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "trackstudy":
            names = [f"trackstudy.{a.name}" for a in node.names] if node.module == "trackstudy" else [node.module]
            for name in names:
                yield name, node, id(node) in top
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "trackstudy":
                    yield a.name, node, id(node) in top


def test_every_part_has_a_rank():
    parts = {_part(name) for _, name, _ in _modules()} - {"trackstudy"}
    assert parts == set(RANK), f"unranked: {sorted(parts - set(RANK))}, gone: {sorted(set(RANK) - parts)}"


def test_stages_import_downwards_only():
    upward = []
    for path, name, tree in _modules():
        src = _part(name)
        if src == "trackstudy":
            continue
        for target, node, _ in _imports(tree):
            dst = _part(target)
            if dst not in (src, "trackstudy") and RANK[dst] >= RANK[src]:
                upward.append(f"{path.relative_to(ROOT)}:{node.lineno} {name} -> {target}")
    assert not upward, "imports that run against the pipeline:\n" + "\n".join(upward)


def test_imports_at_module_top_outside_the_cli():
    lazy = [f"{path.relative_to(ROOT)}:{node.lineno} {target}"
            for path, name, tree in _modules() if _part(name) not in ("cli", "__main__")
            for target, node, top in _imports(tree) if not top]
    assert not lazy, "function-level imports of trackstudy modules:\n" + "\n".join(lazy)


def test_every_module_imports_in_a_fresh_interpreter():
    # the parts form a DAG (above); this catches a loop inside one part and a module that only
    # imports after another one was imported first (each leaf module is imported from scratch in
    # reverse order, so that no module is first met through its package's __init__)
    names = sorted((name for _, name, _ in _modules() if not name.endswith("__main__")), reverse=True)
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.skipif(shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
                    reason="ruff not installed (pip install -e .[test])")
def test_ruff_pyflakes_and_import_order():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    done = subprocess.run([ruff, "check", "--quiet", "trackstudy", "scripts", "tests"], capture_output=True,
                          text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def test_no_import_cycle_between_modules():
    # module-level graph of the top-level imports: two modules of one part importing each other
    # (directly or round a longer loop) would be a loop the part ranks above cannot see
    modules = {name: tree for _, name, tree in _modules()}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, tree in modules.items():
        for node in tree.body:
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "trackstudy":
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    targets.append(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                targets += [a.name for a in node.names if a.name.split(".")[0] == "trackstudy"]
            graph[name].update(t for t in targets if t in modules and t != name)
    state: dict[str, int] = {}

    def visit(n: str, path: list[str]):
        state[n] = 1
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
            if m not in state:
                visit(m, path + [m])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
