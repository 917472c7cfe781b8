"""Shared fixtures. Notebook outputs that are HTML/plotly/widgets are never compared by nbval."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
MINI_DIR = TESTS_DIR.parent / "data" / "real" / "mini"  # the real reduced TrackML event (copy of shared/data/trackml/mini)


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
