"""Shared fixtures. Notebook outputs that are HTML/plotly/widgets are never compared by nbval."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
MINI_DIR = TESTS_DIR / "data"  # copy of the real reduced TrackML event shared/data/trackml/mini


@pytest.fixture(scope="session")
def mini_dir() -> Path:
    """Folder with the real reduced TrackML event 1 (hits, truth, particles, cells; read-only)."""
    return MINI_DIR


@pytest.fixture()
def mini_copy(tmp_path) -> Path:
    """A writable copy of the mini event folder."""
    out = tmp_path / "mini"
    shutil.copytree(MINI_DIR, out)
    for f in out.iterdir():
        f.chmod(0o644)
    return out


def pytest_collectstart(collector):
    # nbval: do not compare rich outputs (plotly, widgets, html, images); cells whose output
    # must match carry "# NBVAL_CHECK_OUTPUT".
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += (
            "text/html", "application/javascript", "application/vnd.plotly.v1+json",
            "application/vnd.jupyter.widget-view+json", "image/png", "image/svg+xml", "stderr",
        )
