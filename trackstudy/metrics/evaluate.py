"""Evaluation of a multi-event submission over a dataset: per-event numbers, their means, and the
pooled particle / track tables that the binned efficiencies and plots use."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from trackstudy.data.io import Event, find_events, read_event, select_volumes
from trackstudy.errors import DataError
from trackstudy.metrics.matching import HEADLINE_KEYS, _check_cuts, match_tracks, summarize_matching, track_parameters
from trackstudy.metrics.submission import read_submission, split_events, validate_submission


@dataclass
class Evaluation:
    """Result of :func:`evaluate_events`.

    per_event: one row per event (the keys of :func:`trackstudy.metrics.evaluate_event`).
    particles / tracks: the events' matching tables concatenated, with an ``event_id`` column;
    tracks also carry the estimated pt, eta, phi of :func:`track_parameters` when positions exist.
    summary: means over events of every fraction (events where it is undefined skipped),
    sums of the counts, and ``n_events``.
    """

    per_event: pd.DataFrame
    particles: pd.DataFrame
    tracks: pd.DataFrame
    summary: dict = field(default_factory=dict)
    name: str = ""


def summarize_events(per_event: pd.DataFrame) -> dict:
    """Means over events of the fractions, sums of the ``n_`` counts, and ``n_events``."""
    out: dict = {}
    for col in per_event.columns:
        if col == "event_id":
            continue
        vals = per_event[col].to_numpy(np.float64)
        if col.startswith("n_") or "_n_" in col:
            out[col] = int(np.nansum(vals))
        else:
            finite = vals[~np.isnan(vals)]
            out[col] = float(finite.mean()) if len(finite) else float("nan")
    out["n_events"] = int(len(per_event))
    head = {k: out.pop(k) for k in HEADLINE_KEYS if k in out}
    return {**head, "n_events": out.pop("n_events"), **out}


def evaluate_events(submission: pd.DataFrame, events: Iterable[Event], *, pt_min: float = 0.9, min_hits: int = 3,
                    eta_max: float = 4.0, volumes=None, detector_regions: bool = True, source: str = "submission",
                    name: str = "", progress: bool = False) -> Evaluation:
    """Evaluate a submission (``event_id, hit_id, track_id``) on events with truth and particles.

    volumes: evaluate on the hits of these volumes only (e.g. the pixel volumes 7, 8, 9);
    None keeps every hit of the data. Submission rows of hits outside the selection are
    dropped (they are hits of the event, just not evaluated); hit ids unknown to the event and
    submission events not among ``events`` are errors.
    """
    _check_cuts(pt_min, min_hits, eta_max)
    events = list(events)
    if not events:
        raise DataError(f"{source}: no events to evaluate on")
    for ev in events:
        if ev.truth is None or ev.particles is None:
            raise DataError(f"event {ev.event_id}: evaluation needs truth and particles")
    by_event = split_events(submission, [ev.event_id for ev in events], source=source)
    rows, parts, tracks = [], [], []
    for ev in tqdm(events, desc=f"evaluate {name}".strip(), disable=not progress):
        sub = by_event[ev.event_id]
        if volumes is not None:
            # hits unknown to the event are an error; hits outside the selected volumes are dropped
            sub = validate_submission(sub, ev.hits, source=source, event_id=ev.event_id)
            ev = select_volumes(ev, volumes)
            sub = sub[sub["hit_id"].isin(ev.hits["hit_id"]).to_numpy()]
        m = match_tracks(sub, ev.truth, ev.particles, hits=ev.hits, min_hits=min_hits,
                         detector_regions=detector_regions, source=source, event_id=ev.event_id)
        rows.append(summarize_matching(m, pt_min=pt_min, min_hits=min_hits, eta_max=eta_max,
                                       detector_regions=detector_regions))
        p = m.particles.copy()
        p.insert(0, "event_id", ev.event_id)
        parts.append(p)
        t = m.tracks.copy()
        if "x" in m.hits.columns:
            t = t.merge(track_parameters(m), on="track_id", how="left")
        t.insert(0, "event_id", ev.event_id)
        tracks.append(t)
    per_event = pd.DataFrame(rows)
    with warnings.catch_warnings():
        # concatenating an empty table (an event without tracks) is fine here
        warnings.simplefilter("ignore", FutureWarning)
        particles = pd.concat(parts, ignore_index=True)
        tracks_df = pd.concat(tracks, ignore_index=True)
    return Evaluation(per_event=per_event, particles=particles, tracks=tracks_df,
                      summary=summarize_events(per_event), name=name)


def evaluate_submission_file(submission: str | os.PathLike | pd.DataFrame, data_dir: str | os.PathLike, *,
                             n_events: int | None = None, pt_min: float = 0.9, min_hits: int = 3,
                             eta_max: float = 4.0, volumes=None, detector_regions: bool = True,
                             name: str | None = None, progress: bool = False) -> Evaluation:
    """Evaluate a submission file (or DataFrame) on the events of ``data_dir`` that it covers.

    The events evaluated are those named in the submission (all of them must be in the data);
    a submission without ``event_id`` is evaluated on the single event of the folder.
    ``n_events`` limits the data events read (in event-id order).
    """
    if isinstance(submission, pd.DataFrame):
        sub = submission
        source = name or "submission"
        if "event_id" not in sub.columns:
            sub = sub.assign(event_id=-1)
    else:
        source = str(submission)
        sub = read_submission(submission)
        if name is None:  # runs/<model>/submission.csv -> <model>; baselines/dbscan.csv -> dbscan
            path = Path(submission)
            name = path.parent.name if path.name.startswith("submission") else path.name.split(".")[0]
    available = find_events(data_dir)
    if not available:
        raise DataError(f"{data_dir}: no TrackML events (event<N>-hits.csv or .csv.gz) in this folder")
    if n_events is not None:
        available = available[: int(n_events)]
    ids = [e for e, _ in available]
    wanted = np.unique(sub["event_id"].to_numpy())
    if len(wanted) and not (len(wanted) == 1 and wanted[0] == -1):
        missing = [int(e) for e in wanted if e not in ids]
        if missing:
            rows = np.flatnonzero(sub["event_id"].to_numpy() == missing[0])
            shown = ", ".join(str(e) for e in ids[:8]) + (", ..." if len(ids) > 8 else "")
            raise DataError(f"{source}: column event_id, row {int(sub.index[rows[0]])}: event {missing[0]} is not "
                            f"in the data {data_dir} (events there: {shown})")
        chosen = [(e, p) for e, p in available if e in set(int(w) for w in wanted)]
    else:
        chosen = available[:1] if len(available) == 1 else available
    events = (read_event(prefix, eid, parts=("hits", "truth", "particles")) for eid, prefix in chosen)
    return evaluate_events(sub, events, pt_min=pt_min, min_hits=min_hits, eta_max=eta_max, volumes=volumes,
                           detector_regions=detector_regions, source=source, name=name or "", progress=progress)


def summary_table(evaluations: Iterable[Evaluation] | dict) -> pd.DataFrame:
    """One row per model: score, DM / perfect / LHC efficiency, fake and duplicate rate (means
    over events), DM efficiency at pT > 1 GeV and in barrel / endcap, and the event count."""
    if isinstance(evaluations, dict):
        items = list(evaluations.items())
    else:
        items = [(ev.name, ev) for ev in evaluations]
    cols = [*HEADLINE_KEYS, "dm_efficiency_pt1", "barrel_dm_efficiency", "endcap_dm_efficiency", "n_events"]
    rows = []
    for name, ev in items:
        rows.append({"model": name, **{c: ev.summary.get(c, np.nan) for c in cols}})
    return pd.DataFrame(rows, columns=["model", *cols]).set_index("model")

