"""Root conftest: applies to tests/ and to the notebooks that nbval collects from notebooks/."""

from __future__ import annotations


def pytest_collectstart(collector):
    # nbval: do not compare rich outputs (plotly, widgets, html, images); cells whose output
    # must match carry "# NBVAL_CHECK_OUTPUT".
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += (
            "text/html", "application/javascript", "application/vnd.plotly.v1+json",
            "application/vnd.jupyter.widget-view+json", "image/png", "image/svg+xml", "stderr",
        )
