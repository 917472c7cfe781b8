"""Project paths, resolved from the package (never from the working directory: papermill
runs notebooks from elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
DATA_DIR = ROOT / "data"
PROCESSED_DIR = DATA_DIR / "processed"
REPORTS_DIR = ROOT / "reports"
PARAMS_DIR = ROOT / "params"
NOTEBOOKS_DIR = ROOT / "notebooks"
RUNS_DIR = ROOT / "runs"
#: The real TrackML samples the study compares with: copies committed in data/real/ (``mini``: a
#: reduced event with truth; ``full``: the full-size hits of event 1001 and the particles of
#: events 1000 and 1001; see data/real/README.md). Override with the TRACKSTUDY_TRACKML
#: environment variable (a folder holding ``mini/`` and ``full/``).
SHARED_TRACKML_DIR = Path(os.environ.get("TRACKSTUDY_TRACKML", ROOT / "data" / "real"))
#: The TrackML detector geometry, shipped gzipped inside the package.
DETECTORS_CSV = PACKAGE_DIR / "data" / "detectors.csv.gz"

#: Pixel volumes of the TrackML detector: endcap z<0, barrel, endcap z>0.
PIXEL_VOLUMES = (7, 8, 9)
#: Solenoid field (T) along z.
B_FIELD_T = 2.0


def resolve_path(path: str | os.PathLike) -> Path:
    """A user-given path: absolute as is, relative to the project root otherwise (notebooks run
    from notebooks/ under papermill, so the working directory is never used)."""
    path = Path(os.path.expanduser(str(path)))
    return path if path.is_absolute() else ROOT / path
