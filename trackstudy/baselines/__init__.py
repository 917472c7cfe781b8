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
import yaml
from tqdm.auto import tqdm

from trackstudy.baselines.dbscan_helix import HelixDBSCANParams, dbscan_helix_tracks, unrolled_features
from trackstudy.baselines.simple import random_tracks, shuffled_tracks, truth_tracks
from trackstudy.config import PARAMS_DIR
from trackstudy.data.io import Event, iter_events, select_volumes
from trackstudy.errors import ConfigError

#: Baseline methods and whether they read the truth.
METHODS = {"truth": True, "random": False, "shuffle": True, "dbscan-helix": False}
BASELINES_YAML = PARAMS_DIR / "baselines.yaml"


def load_baseline_params(path: str | os.PathLike | None = None) -> dict:
    """The per-method parameter sections of a baselines YAML file (default ``params/baselines.yaml``);
    a missing default file gives the built-in defaults."""
    path = Path(path) if path is not None else BASELINES_YAML
    if not path.is_file():
        if path == BASELINES_YAML:
            return {}
        raise ConfigError(f"{path}: no such parameter file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of method -> parameters")
    unknown = sorted(set(data) - set(METHODS))
    if unknown:
        raise ConfigError(f"{path}: unknown method section(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    for name, section in data.items():
        if section is not None and not isinstance(section, dict):
            raise ConfigError(f"{path}: section {name!r} must be a mapping of parameters")
    return {k: dict(v or {}) for k, v in data.items()}


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
    for i, ev in enumerate(tqdm(events, desc=method, unit="event", disable=not progress)):
        if n_events is not None and i >= n_events:
            break
        if volumes is not None:
            ev = select_volumes(ev, volumes)
        sub = run_baseline(method, ev, params, seed=seed + i)
        sub.insert(0, "event_id", np.int64(ev.event_id))
        out.append(sub)
    if not out:
        raise ConfigError("no events to run the baseline on")
    return pd.concat(out, ignore_index=True)


__all__ = [
    "BASELINES_YAML", "HelixDBSCANParams", "METHODS", "baseline_submission", "dbscan_helix_tracks",
    "load_baseline_params", "random_tracks", "run_baseline", "shuffled_tracks", "truth_tracks",
    "unrolled_features",
]
