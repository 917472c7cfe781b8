"""Shared writer of the generated notebooks (scripts/make_nbNN.py): title, tagged parameters
cell, then alternating markdown and code cells; python3 kernel; committed without outputs."""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from trackstudy.config import NOTEBOOKS_DIR
from trackstudy.data.io import atomic_write_bytes


def build(title: str, parameters: str, cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [new_markdown_cell(title), new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    nb.cells += [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in cells]
    nbformat.validate(nb)
    return nb


def main(name: str, title: str, parameters: str, cells: list[tuple[str, str]], argv=None) -> None:
    ap = argparse.ArgumentParser(description=f"write notebooks/{name}")
    ap.add_argument("--force", action="store_true", help="overwrite the notebook if it exists")
    ap.add_argument("--out", type=Path, default=NOTEBOOKS_DIR / name, help=f"output path (default notebooks/{name})")
    args = ap.parse_args(argv)
    nb = build(title, parameters, cells)
    print(atomic_write_bytes(args.out, nbformat.writes(nb).encode() + b"\n", force=args.force))
