"""A run's track-quality scorer (:mod:`trackstudy.postprocessing.quality`), fitted and tuned.

:func:`fit_run_quality` runs a trained model with the run's locality (barrel views included)
over simulated events with truth that it was not trained on, keeps every track candidate before
selection with its features and whether it is a double-majority match, fits the scorer, then
chooses the threshold on other events (validation events: not the held-out ones) for a metric
of the full events, by default DM efficiency minus fake rate (the full-event targets bound both).
The scorer is written to the run as ``track_quality.npz``; from then on ``load_run`` attaches it
and ``predict`` / ``bench latency`` / the held-out benchmark choose tracks with it
(``--no-quality``: without).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from trackstudy.config import resolve_path
from trackstudy.data.io import atomic_write_bytes, iter_events
from trackstudy.errors import ConfigError, DataError
from trackstudy.inference import check_locality, predict_event, select_pixel_hits, with_unseen
from trackstudy.metrics import evaluate_event
from trackstudy.postprocessing.quality import (
    MIN_TRACK_HITS,
    QUALITY_FILE,
    apply_variants,
    candidate_labels,
    fit_track_quality,
    select_candidates,
)
from trackstudy.postprocessing.track_formation import labels_to_track_ids, model_params, submission
from trackstudy.training.checkpoint import load_run

#: Thresholds tried on the validation events.
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
#: Metrics the threshold can be chosen for.
METRICS = ("dm_minus_fake", "dm_efficiency", "trackml_score")
#: The JSON report written next to the scorer.
REPORT_FILE = "track_quality.json"


def parse_vary(items) -> dict:
    """``["eps=0.15,0.25", "min_track_pt=0"]`` (or one string of them joined by spaces; NAME:VALUES
    as well, which papermill's parameter cells can hold) ->
    ``{"eps": [0.15, 0.25], "min_track_pt": [0]}`` (numbers where they parse, else strings); a
    ConfigError naming --vary otherwise."""
    if isinstance(items, str):
        items = items.split()
    out = {}
    for item in items:
        name, sep, values = item.partition("=") if "=" in item else item.partition(":")
        name = name.strip()
        if not sep or not name or not values.strip():
            raise ConfigError(f"--vary {item!r}: expected NAME=V1,V2,... (e.g. --vary eps=0.15,0.25)")
        if name in out:
            raise ConfigError(f"--vary {name}: given twice")
        vals = []
        for v in values.split(","):
            v = v.strip()
            try:
                vals.append(int(v) if v.lstrip("-").isdigit() else float(v))
            except ValueError:
                vals.append(v)
        out[name] = vals
    return out


def vary_variants(vary: Mapping | None) -> list[dict]:
    """Track-formation variants from ``{name: [values]}``: every combination of the values (e.g.
    ``{"eps": [0.15, 0.25], "min_track_pt": [0.0]}`` -> two variants); [] for none."""
    if not vary:
        return []
    names = list(vary)
    for name in names:
        values = vary[name]
        if not isinstance(values, (list, tuple)) or not values:
            raise ConfigError(f"vary {name}: give a non-empty list of values")
    return [dict(zip(names, combo)) for combo in itertools.product(*(list(vary[n]) for n in names))]


def _candidates(model, event, locality, pixel_only: bool, variants) -> dict:
    """Run one event (quality off) and keep its candidates, pixel selection and truth."""
    capture: dict = {}
    predict_event(model, event.hits, locality=locality, event_id=event.event_id, pixel_only=pixel_only,
                  capture=capture, quality=False, variants=variants)
    if "candidates" not in capture:
        raise DataError(f"event {event.event_id}: no track candidates (the hits need volume_id and layer_id)")
    keep = select_pixel_hits(event.hits) if pixel_only else np.ones(len(event.hits), dtype=bool)
    return {"event": event, "keep": keep, **capture["candidates"]}


def _labels(c: dict) -> np.ndarray:
    ev, keep = c["event"], c["keep"]
    if ev.truth is None:
        raise DataError(f"event {ev.event_id}: fitting a track-quality scorer needs truth")
    sel = ev.hits["hit_id"].to_numpy()[keep]
    pid_of = ev.truth.set_index("hit_id")["particle_id"]
    pid = pid_of.reindex(sel).fillna(0).to_numpy(np.int64)
    ids, counts = np.unique(pid, return_counts=True)
    return candidate_labels(c["track"], pid[c["rows"]], dict(zip(ids.tolist(), counts.tolist())))


def _metrics(c: dict, labels: np.ndarray) -> dict:
    ev = c["event"]
    sub = submission(ev.event_id, ev.hits["hit_id"].to_numpy(), labels_to_track_ids(with_unseen(labels, c["keep"])))
    res = evaluate_event(sub, ev.truth, ev.particles, hits=ev.hits)
    res["dm_minus_fake"] = res["dm_efficiency"] - res["fake_rate"]
    return {k: float(res[k]) for k in ("dm_efficiency", "fake_rate", "duplicate_rate", "trackml_score",
                                       "dm_minus_fake")}


def fit_run_quality(run_dir: str | os.PathLike, train_data: str | os.PathLike, val_data: str | os.PathLike, *,
                    n_train: int | None = None, n_val: int | None = None, barrel_views=None,
                    view_frame: bool | str | None = None,
                    metric: str = "dm_minus_fake", thresholds: Sequence[float] = THRESHOLDS,
                    hidden=(32, 32), seed: int = 0, force: bool = False, progress: bool = True,
                    device: str = "auto", vary: Mapping | None = None) -> dict:
    """Fit the scorer of ``run_dir`` on the events of ``train_data``, choose its threshold on those
    of ``val_data`` (both simulated with truth, neither used in training nor held out), write
    ``track_quality.npz`` and ``track_quality.json`` into the run and return the report
    (threshold table, candidates, seconds). ``barrel_views`` overrides the run's views (the scorer
    is fitted on the candidates it will choose among), ``view_frame`` the run's ``locality.view_frame``
    (the report records both). ``vary``: track-formation parameters to vary,
    ``{name: [values]}`` (e.g. ``{"eps": [0.15, 0.2, 0.25, 0.3, 0.35], "min_track_pt": [0.0]}``):
    the candidates of every combination are pooled, here and wherever the scorer runs, so the
    scorer chooses among alternative tracks of the same hits. An existing scorer is replaced only
    with ``force``."""
    from tqdm.auto import tqdm

    if metric not in METRICS:
        raise ConfigError(f"metric={metric!r}: choose from {', '.join(METRICS)}")
    thresholds = sorted(float(t) for t in thresholds)
    if not thresholds or thresholds[0] < 0 or thresholds[-1] > 1:
        raise ConfigError("thresholds: give probabilities in [0, 1]")
    variants = vary_variants(vary)
    run_dir = resolve_path(run_dir)
    target = run_dir / QUALITY_FILE
    if target.exists() and not force:
        raise DataError(f"{target}: the run already has a track-quality scorer (give --force to replace it)")
    t_start = time.perf_counter()
    model, cfg = load_run(run_dir, device)
    model.track_quality = None
    locality = dict(cfg.get("locality") or {"method": "none"})
    if barrel_views is not None:
        locality["barrel_views"] = barrel_views
    if view_frame is not None:
        locality["view_frame"] = view_frame
    locality = check_locality(locality)
    pixel_only = bool(((cfg.get("data") or {}).get("train") or {}).get("pixel_only", False))
    apply_variants(model_params(model), variants)  # an unknown parameter fails here, before any event runs

    def collect(folder, n, what):
        out = []
        for ev in tqdm(iter_events(folder, n_events=n), desc=what, unit="event", total=n, disable=not progress):
            out.append(_candidates(model, ev, locality, pixel_only, variants))
        if not out:
            raise DataError(f"{folder}: no events")
        return out

    train = collect(train_data, n_train, "quality: fit events")
    feats = np.concatenate([c["features"] for c in train])
    good = np.concatenate([_labels(c) for c in train])
    t_fit = time.perf_counter()
    scorer = fit_track_quality(feats, good, hidden=hidden, seed=seed)
    scorer.variants = variants
    scorer.view_frame = locality["view_frame"] if locality["barrel_views"] else None
    fitted = feats[:, 0] >= MIN_TRACK_HITS
    fit_seconds = time.perf_counter() - t_fit
    val = collect(val_data, n_val, "quality: threshold events")
    rows = []
    scores = [scorer.candidate_scores(c["features"]) for c in val]
    for thr in thresholds:  # 0: every candidate, best first (the scorer resolves overlaps only)
        vals = []
        for c, s in zip(val, scores):
            labels, _ = select_candidates(int(c["keep"].sum()), c["rows"], c["track"], s, thr)
            vals.append(_metrics(c, labels))
        rows.append({"threshold": thr, **{k: float(np.nanmean([v[k] for v in vals])) for k in vals[0]}})
    table = pd.DataFrame(rows)
    best = table.sort_values([metric, "threshold"], ascending=[False, True], kind="stable").iloc[0]
    scorer.threshold = float(best["threshold"])
    scorer.save(target, force=True)
    report = {
        "run": str(run_dir), "train_data": str(resolve_path(train_data)), "val_data": str(resolve_path(val_data)),
        "n_train_events": len(train), "n_val_events": len(val), "barrel_views": list(locality["barrel_views"]),
        "view_frame": locality["view_frame"],
        "variants": variants,
        "n_candidates": int(len(feats)), "n_candidates_fitted": int(fitted.sum()),
        "good_fraction": float(good[fitted].mean()), "hidden": list(hidden), "metric": metric,
        "threshold": scorer.threshold, "fit_seconds": fit_seconds, "seconds": time.perf_counter() - t_start,
        "table": json.loads(table.to_json(orient="records")),
    }
    atomic_write_bytes(run_dir / REPORT_FILE, (json.dumps(report, indent=2) + "\n").encode(), force=True)
    return report


__all__ = ["METRICS", "REPORT_FILE", "THRESHOLDS", "fit_run_quality", "parse_vary", "vary_variants"]
