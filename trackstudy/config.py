"""Project paths, resolved from the package (never from the working directory: papermill
runs notebooks from elsewhere), detector constants, and the one YAML reader of the project."""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import yaml

from trackstudy.errors import ConfigError

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
REAL_DATA_DIR = Path(os.environ.get("TRACKSTUDY_TRACKML", ROOT / "data" / "real"))
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


class YamlLoader(yaml.SafeLoader):
    """YAML 1.1 without base-60 numbers: ``10:50`` stays the string '10:50' (safe_load reads 650)."""


def _no_sexagesimal(kind):
    base = yaml.SafeLoader.construct_yaml_int if kind == "int" else yaml.SafeLoader.construct_yaml_float

    def construct(loader, node):
        text = loader.construct_scalar(node)
        return text if ":" in text else base(loader, node)
    return construct


YamlLoader.add_constructor("tag:yaml.org,2002:int", _no_sexagesimal("int"))
YamlLoader.add_constructor("tag:yaml.org,2002:float", _no_sexagesimal("float"))


def yaml_problem(exc: yaml.YAMLError, with_line: bool = False) -> str:
    """One line from a YAML error: its problem and, for files, where."""
    problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["syntax error"])[0]
    mark = getattr(exc, "problem_mark", None)
    if with_line and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return problem


def read_yaml(path: str | os.PathLike, *, what: str = "YAML file", expected: str = "a mapping") -> dict:
    """The mapping in the YAML file ``path`` (an empty file: {}), read with :class:`YamlLoader`.

    ``what`` names the file in errors ("config file", "parameter file"); ``expected`` says what the
    top level must be. ConfigError names the file and, for syntax errors, the line and column."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder (expected a {what})")
    if not p.is_file():
        raise ConfigError(f"{p}: {what} not found")
    try:
        with open(p, encoding="utf-8") as f:
            data = yaml.load(f, Loader=YamlLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({yaml_problem(exc, with_line=True)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a text file (expected a {what})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected {expected}, got {type(data).__name__}")
    return data


def json_safe(obj):
    """``obj`` with what strict JSON cannot hold replaced: numpy scalars by Python numbers, NaN and
    infinities by None (null), paths by strings, tuples by lists, keys by strings. For the
    summaries and reports other tools read (``json.dumps(..., allow_nan=False)`` then holds)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "dtype") and getattr(obj, "shape", None) == ():  # numpy scalar
        obj = obj.item()
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def config_from_dict(cls, d, section: str):
    """``cls(**d)`` for a dataclass config read from the ``section`` of a YAML file (e.g.
    "model.gnn"): None is the defaults; anything but a mapping, an unknown key or a value the
    dataclass rejects is a ConfigError that names the section and the key."""
    if isinstance(d, cls):
        return d
    if d is not None and not isinstance(d, dict):
        raise ConfigError(f"{section}: expected a mapping, got {d!r}")
    d = dict(d or {})
    valid = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(map(str, d)) - set(valid))
    if unknown:
        raise ConfigError(f"unknown config key '{section}.{unknown[0]}'; valid keys in {section}: {', '.join(valid)}")
    try:
        return cls(**d)
    except TypeError as exc:
        raise ConfigError(f"{section}: {exc}") from None
