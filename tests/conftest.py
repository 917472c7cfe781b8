"""Shared fixtures. Notebook outputs that are HTML/plotly/widgets are never compared by nbval."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

TESTS_DIR = Path(__file__).resolve().parent
MINI_DIR = TESTS_DIR.parent / "data" / "real" / "mini"  # the real reduced TrackML event (data/real/README.md)


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


@pytest.fixture()
def one_torch_thread():
    """Run torch single-threaded: on the shared test machine OpenMP threads spinning against other
    jobs make tiny kernels up to 100x slower. Test modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
