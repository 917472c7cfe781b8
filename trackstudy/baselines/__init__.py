"""Baselines that need no training, each producing a submission through the same interface:
``run_baseline(method, event, params, seed) -> DataFrame[hit_id, track_id]``.

Methods: ``truth`` (perfect assignment), ``random``, ``shuffle`` (the challenge's hit shuffling
at a rate) and ``dbscan-helix`` (classical track finding: DBSCAN on helix-unrolled features).
Parameters come from ``params/baselines.yaml`` (:func:`load_baseline_params`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from trackstudy.baselines.dbscan_helix import HelixDBSCANParams, dbscan_helix_tracks, unrolled_features
from trackstudy.baselines.simple import random_tracks, shuffled_tracks, truth_tracks
from trackstudy.config import PARAMS_DIR, read_yaml
from trackstudy.data.io import Event, iter_events, select_volumes
from trackstudy.errors import ConfigError

#: Baseline methods and whether they read the truth.
METHODS = {"truth": True, "random": False, "shuffle": True, "dbscan-helix": False}
BASELINES_YAML = PARAMS_DIR / "baselines.yaml"


def load_baseline_params(path: str | os.PathLike | None = None) -> dict:
    """The per-method parameter sections of a baselines YAML file (default ``params/baselines.yaml``);
    a missing default file gives the built-in defaults."""
    path = Path(path) if path is not None else BASELINES_YAML
    if not path.exists() and path == BASELINES_YAML:
        return {}
    data = read_yaml(path, what="parameter file", expected="a mapping of method -> parameters")
    unknown = sorted(set(data) - set(METHODS))
    if unknown:
        raise ConfigError(f"{path}: unknown method section(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    for name, section in data.items():
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"{path}: section {name!r} must be a mapping of parameters")
    return {k: dict(v or {}) for k, v in data.items()}


#: Parameters of the simple methods: name -> (allowed range, low, high).
_SIMPLE_PARAMS = {"random": {"mean_hits": (1.0, float("inf"))}, "shuffle": {"rate": (0.0, 1.0)}, "truth": {}}
#: Upper limits of the dbscan-helix counts (beyond them a run would not end or not fit in memory).
_HELIX_LIMITS = {"n_curvature": 10_000, "n_passes": 100, "max_track_hits": 10_000, "min_samples": 10_000,
                 "accept_layers": 1_000}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def check_params(method: str, params: dict, where: str = "parameters") -> None:
    """ConfigError naming ``where`` (the parameter file) and the parameter for an unknown name,
    a value of the wrong type or out of range; checked before any event is read."""
    if method not in METHODS:
        raise ConfigError(f"unknown baseline method {method!r}; expected one of {', '.join(METHODS)}")
    if method in _SIMPLE_PARAMS:
        known = _SIMPLE_PARAMS[method]
        for name, value in params.items():
            if name not in known:
                raise ConfigError(f"{where}: {method}: unknown parameter {name!r}; known: "
                                  f"{', '.join(known) or '(none)'}")
            low, high = known[name]
            if not _is_number(value) or not low <= value <= high:
                raise ConfigError(f"{where}: {method}.{name}: expected a number in {low:g} .. {high:g}, "
                                  f"got {value!r}")
        return
    from dataclasses import fields

    types = {f.name: type(f.default) for f in fields(HelixDBSCANParams)}
    for name, value in params.items():
        if name in ("z0_values", "z0_range"):
            values = value if isinstance(value, (list, tuple)) else [value]
            if not values or not all(_is_number(v) for v in values) or (name == "z0_range" and len(values) != 3):
                raise ConfigError(f"{where}: dbscan-helix.{name}: expected "
                                  f"{'[first, last, step] in mm' if name == 'z0_range' else 'a list of numbers (mm)'}"
                                  f", got {value!r}")
            if name == "z0_range" and values[2] > 0 and (values[1] - values[0]) / values[2] > 10_000:
                raise ConfigError(f"{where}: dbscan-helix.z0_range {value!r}: more than 10000 vertex hypotheses")
            if name == "z0_values" and len(values) > 10_000:
                raise ConfigError(f"{where}: dbscan-helix.z0_values: more than 10000 vertex hypotheses")
            continue
        if name not in types:
            raise ConfigError(f"{where}: dbscan-helix: unknown parameter {name!r}; known: "
                              f"{', '.join(sorted([*types, 'z0_range']))}")
        if types[name] is int and not (isinstance(value, int) and not isinstance(value, bool)):
            raise ConfigError(f"{where}: dbscan-helix.{name}: expected an integer, got {value!r}")
        if not _is_number(value):
            raise ConfigError(f"{where}: dbscan-helix.{name}: expected a number, got {value!r}")
        if name in _HELIX_LIMITS and value > _HELIX_LIMITS[name]:
            raise ConfigError(f"{where}: dbscan-helix.{name}: {value} is out of range (at most {_HELIX_LIMITS[name]})")
    try:
        HelixDBSCANParams.from_dict(params)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def run_baseline(method: str, event: Event, params: dict | None = None, seed: int = 0) -> pd.DataFrame:
    """One event's submission (``hit_id, track_id``) from a baseline method."""
    if method not in METHODS:
        raise ConfigError(f"unknown baseline method {method!r}; expected one of {', '.join(METHODS)}")
    params = dict(params or {})
    try:
        if method == "truth":
            if params:
                raise TypeError(f"unexpected parameter(s) {', '.join(params)}")
            return truth_tracks(event)
        if method == "random":
            return random_tracks(event, seed=seed, **params)
        if method == "shuffle":
            return shuffled_tracks(event, seed=seed, **params)
        return dbscan_helix_tracks(event, params)
    except TypeError as exc:
        raise ConfigError(f"baseline {method}: {exc}") from None


def baseline_submission(method: str, events: Iterable[Event] | str | os.PathLike, params: dict | None = None, *,
                        seed: int = 0, n_events: int | None = None, volumes=None,
                        progress: bool = False) -> pd.DataFrame:
    """A multi-event submission (``event_id, hit_id, track_id``) of a baseline over events or a
    dataset folder. volumes: restrict the hits first (e.g. the pixel volumes); event i is
    seeded with ``seed + i`` so events are independent of how many are run."""
    if method not in METHODS:
        raise ConfigError(f"unknown baseline method {method!r}; expected one of {', '.join(METHODS)}")
    if isinstance(events, (str, os.PathLike)):
        parts = ("hits", "truth") if METHODS[method] else ("hits",)
        events = iter_events(events, parts=parts, n_events=n_events)
    out = []
    seen_volumes: set = set()
    for i, ev in enumerate(tqdm(events, desc=method, unit="event", disable=not progress)):
        if n_events is not None and i >= n_events:
            break
        if volumes is not None:
            seen_volumes.update(int(v) for v in np.unique(ev.hits["volume_id"].to_numpy()))
            ev = select_volumes(ev, volumes)
            if len(ev.hits) == 0:  # nothing to assign in this event
                continue
        sub = run_baseline(method, ev, params, seed=seed + i)
        sub.insert(0, "event_id", np.int64(ev.event_id))
        out.append(sub)
    if not out:
        if volumes is not None and seen_volumes:
            raise ConfigError(f"--volumes {','.join(str(v) for v in volumes)}: no hit of the events is in these "
                              f"volumes (volumes there: {', '.join(str(v) for v in sorted(seen_volumes))})")
        raise ConfigError("no events to run the baseline on")
    return pd.concat(out, ignore_index=True)


__all__ = [
    "BASELINES_YAML", "HelixDBSCANParams", "METHODS", "baseline_submission", "check_params", "dbscan_helix_tracks",
    "load_baseline_params", "random_tracks", "run_baseline", "shuffled_tracks", "truth_tracks",
    "unrolled_features",
]
