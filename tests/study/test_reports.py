"""trackstudy.study.reports: parameter files, papermill execution into HTML, the index page."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from trackstudy.errors import ConfigError
from trackstudy.study import reports


def test_load_params_validates(tmp_path):
    good = tmp_path / "p.yaml"
    good.write_text("a: 1\nb: [1, 2]\nc: ''\n")
    assert reports.load_params(good) == {"a": 1, "b": [1, 2], "c": ""}
    nested = tmp_path / "n.yaml"
    nested.write_text("a: {b: 1}\n")
    with pytest.raises(ConfigError, match="'a' must be a scalar"):
        reports.load_params(nested)
    with pytest.raises(ConfigError, match="parameter file not found"):
        reports.load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "b.yaml"
    bad.write_text("a: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        reports.load_params(bad)


def test_notebook_selection():
    assert [nb.stem[:2] for nb in reports.notebooks()] == sorted(nb.stem[:2] for nb in reports.notebooks())
    assert [nb.stem[:2] for nb in reports.notebooks(["03"])] == ["03"]
    with pytest.raises(ConfigError, match="no notebook"):
        reports.notebooks(["99"])


@pytest.mark.slow
def test_run_notebook_injects_declared_parameters_and_writes_offline_html(tmp_path):
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [new_markdown_cell("# t"), new_code_cell("n = 1", metadata={"tags": ["parameters"]}),
                new_code_cell("import plotly.graph_objects as go\nfrom trackstudy.study.reports import notebook_setup\n"
                              "notebook_setup()\nprint('n is', n)\ngo.Figure(go.Scatter(x=[1, 2], y=[n, n])).show()")]
    path = tmp_path / "07_t.ipynb"
    nbformat.write(nb, path)
    out = tmp_path / "out"
    out.mkdir()
    result = reports.run_notebook(path, {"n": 5, "other": 1}, out)
    assert result["status"] == "ok" and result["parameters"] == {"n": 5}  # undeclared ones are not injected
    executed = nbformat.read(out / "07_t.ipynb", as_version=4)
    assert "n is 5" in json.dumps(executed.cells[-1].outputs)
    page = (out / "07_t.html").read_text()
    assert "Plotly.newPlot" in page and 'src="https://cdn.plot.ly' not in page  # plotly.js embedded
    again = reports.executed_result(out / "07_t.ipynb")  # what a later --only run keeps in the index
    assert again["status"] == "ok" and again["parameters"] == {"n": 5} and again["html"] == "07_t.html"
    assert reports.executed_result(out / "missing.ipynb") is None
    index = reports.write_index([result], out, "p.yaml", "cpu")
    assert "07_t.html" in index.read_text()


@pytest.mark.slow
def test_failed_notebook_is_reported_not_raised(tmp_path):
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [new_code_cell("x = 1", metadata={"tags": ["parameters"]}), new_code_cell("raise ValueError('boom')")]
    path = tmp_path / "08_f.ipynb"
    nbformat.write(nb, path)
    result = reports.run_notebook(path, {}, tmp_path)
    assert result["status"] == "failed" and result["error"]
    assert (tmp_path / "08_f.html").exists()  # the report keeps the traceback
