"""The committed notebooks are the source of the study (there is no generator script): each one is
a clean, valid notebook (no outputs, no execution counts, minimal metadata; `make strip-notebooks`
cleans a notebook saved from JupyterLab), starts with a markdown title and one `parameters` cell of
plain literal assignments, defines no functions or classes (those live in the package), and its
defaults are the smoke-size values of params/smoke.yaml.

Reads the files only (nbformat, ast, yaml): no kernel, no import of the package."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from IPython.core.inputtransformer2 import TransformerManager

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = ROOT / "notebooks"
SMOKE_YAML = ROOT / "params" / "smoke.yaml"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))

#: The whole notebook-level metadata a committed notebook carries (what `make strip-notebooks` writes).
NOTEBOOK_METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}
#: NN_word_word.ipynb: two digits, then lowercase snake-case words.
NAME_RE = re.compile(r"^(\d{2})_[a-z0-9]+(?:_[a-z0-9]+)*\.ipynb$")
#: Markdown must not point outside the repository or at internal issue numbers.
OUTSIDE_RE = re.compile(r"(?:\bshared/|\.\./|/work/|\bissues?\s*#?\s*\d+|(?<![\w#&])#\d+\b)", re.IGNORECASE)
STRIP_HINT = "run `make strip-notebooks`"


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code(source: str) -> ast.Module:
    """A code cell's source as a Python AST (IPython magics, if any, turned into plain calls)."""
    return ast.parse(TransformerManager().transform_cell(source))


def _literal(node: ast.expr):
    """The value of a scalar literal (a constant, optionally signed), or raise ValueError."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = node.operand
        if isinstance(inner, ast.Constant) and type(inner.value) in (int, float):
            return ast.literal_eval(node)
        raise ValueError("signed non-number")
    if isinstance(node, ast.Constant) and (node.value is None or type(node.value) in (str, int, float, bool)):
        return node.value
    raise ValueError(ast.dump(node))


def _parameters(nb: nbformat.NotebookNode) -> dict[str, object]:
    """Name -> default of the notebook's parameters cell (the second cell)."""
    out = {}
    for stmt in _code(nb.cells[1].source).body:
        out[stmt.targets[0].id] = _literal(stmt.value)
    return out


def _same(a, b) -> bool:
    # papermill passes the YAML value as is, so 1 vs 1.0 or 0 vs False would change the notebook
    return type(a) is type(b) and a == b


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.name)
def notebook(request) -> tuple[str, nbformat.NotebookNode]:
    return request.param.name, _read(request.param)


def test_notebook_names_are_numbered_without_gaps():
    names = [p.name for p in NOTEBOOKS]
    assert len(names) >= 7, names
    bad = [n for n in names if not NAME_RE.match(n)]
    assert not bad, f"notebook names must look like NN_verb_noun.ipynb (lowercase, underscores): {bad}"
    numbers = [int(NAME_RE.match(n).group(1)) for n in names]
    assert numbers == list(range(1, len(names) + 1)), f"notebooks must be numbered 01, 02, ... without gaps or repeats: {names}"


def test_notebook_is_valid_nbformat(notebook):
    name, nb = notebook
    assert nb.nbformat == 4, name
    nbformat.validate(nb)


def test_notebook_has_no_outputs_or_execution_counts(notebook):
    name, nb = notebook
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
    assert not dirty, f"{name}: cells {dirty} have outputs or execution counts; {STRIP_HINT}"


def test_notebook_metadata_is_minimal(notebook):
    name, nb = notebook
    assert nb.metadata == NOTEBOOK_METADATA, f"{name}: notebook metadata {dict(nb.metadata)}; {STRIP_HINT}"
    extra = {i: sorted(set(c.metadata) - {"tags"}) for i, c in enumerate(nb.cells) if set(c.metadata) - {"tags"}}
    assert not extra, f"{name}: cell metadata other than tags {extra}; {STRIP_HINT}"


def test_title_then_single_parameters_cell(notebook):
    name, nb = notebook
    assert len(nb.cells) >= 3, name
    title = nb.cells[0]
    assert title.cell_type == "markdown" and title.source.startswith("# "), f"{name}: the first cell must be the markdown title"
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert tagged == [1], f"{name}: exactly one cell, the second, may be tagged `parameters` (tagged: {tagged})"
    assert nb.cells[1].cell_type == "code", f"{name}: the parameters cell must be a code cell"


def test_parameters_cell_is_flat_literal_assignments(notebook):
    name, nb = notebook
    body = _code(nb.cells[1].source).body
    assert body, f"{name}: empty parameters cell"
    seen = set()
    for stmt in body:
        where = f"{name}, parameters cell line {stmt.lineno}"
        assert isinstance(stmt, ast.Assign), f"{where}: only `name = literal` assignments are allowed"
        assert len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name), f"{where}: assign one plain name"
        try:
            _literal(stmt.value)
        except ValueError:
            pytest.fail(f"{where}: {stmt.targets[0].id} must be a literal str, int, float, bool or None")
        assert stmt.targets[0].id not in seen, f"{where}: {stmt.targets[0].id} assigned twice"
        seen.add(stmt.targets[0].id)


def test_no_definitions_in_code_cells(notebook):
    name, nb = notebook
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for node in ast.walk(_code(cell.source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.append(f"cell {i}: {node.name}")
    assert not found, f"{name}: define functions and classes in the trackstudy package, not in notebooks: {found}"


def test_markdown_stays_inside_the_repository(notebook):
    name, nb = notebook
    hits = [f"cell {i}: {m.group(0)!r}" for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
            for m in OUTSIDE_RE.finditer(c.source)]
    assert not hits, (f"{name}: markdown names paths outside the repository or internal issue numbers "
                      f"(cite papers by title, see docs/references.md; real data is in data/real/): {hits}")


def test_parameters_agree_with_smoke_yaml(notebook):
    # trackstudy's study runner gives each notebook the keys of the parameter file that its parameters
    # cell declares; so every declared parameter that smoke.yaml names must default to smoke.yaml's value
    name, nb = notebook
    smoke = yaml.safe_load(SMOKE_YAML.read_text())
    differ = {k: (v, smoke[k]) for k, v in _parameters(nb).items() if k in smoke and not _same(v, smoke[k])}
    assert not differ, f"{name}: parameter defaults differ from params/smoke.yaml (notebook, yaml): {differ}"


def test_every_smoke_parameter_is_declared_by_a_notebook():
    smoke = yaml.safe_load(SMOKE_YAML.read_text())
    declared = set().union(*(_parameters(_read(p)) for p in NOTEBOOKS))
    unused = sorted(set(smoke) - declared)
    assert not unused, f"params/smoke.yaml names parameters no notebook's parameters cell declares: {unused}"
