"""Packaging: environment.yml and pyproject.toml list the same dependencies; the CLI is installed."""

from __future__ import annotations

import re

import tomllib
import yaml

from trackstudy.config import ROOT

# conda-forge names that differ from PyPI names
CONDA_TO_PYPI = {"pytorch": "torch"}


def _name_spec(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    return m.group(1).lower().replace("_", "-"), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pypi = dict(_name_spec(r) for r in project["dependencies"])
    for extra in project["optional-dependencies"].values():
        pypi.update(_name_spec(r) for r in extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            assert dep == {"pip": ["-e ."]}, "the pip section installs the package itself, nothing else"
            continue
        name, spec = _name_spec(dep)
        if name in {"python", "pip"}:
            continue
        conda[CONDA_TO_PYPI.get(name, name)] = spec
    assert conda == pypi


def test_torch_requirement_is_a_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = [r for r in project["dependencies"] if r.startswith("torch")]
    assert torch == ["torch>=2.5"]


def test_console_script_and_ci_call_make_test():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["trackstudy"] == "trackstudy.cli:main"
    assert "make test" in (ROOT / ".ci" / "run").read_text()
