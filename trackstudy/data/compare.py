"""Comparisons of simulated and real events: per-particle hit counts and per-layer occupancy.

:func:`hit_count_difference` compares the ``nhits`` of the same particles in two particles tables
(e.g. a real event's and :func:`trackstudy.data.simulate.simulate_from_particles` of its particles);
:func:`layer_summary` gives, per (volume, layer), the hits, noise hits, particles and the
double-hit rate (a particle with two or more hits on one layer: overlapping modules).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trackstudy.data.io import Event
from trackstudy.errors import DataError


def hit_count_difference(a: pd.DataFrame, b: pd.DataFrame, *, pt_min: float | None = None,
                         min_hits: int = 0) -> dict:
    """Statistics of ``nhits_a - nhits_b`` over the particles of both tables (matched by particle_id).

    pt_min: only particles with pT >= pt_min (GeV, from ``a``'s px, py). min_hits: only particles with at
    least this many hits in ``a`` or ``b``. Returns n, mean, mean_abs, sd and the fractions equal,
    within_one (|d| <= 1) and off_by_more_than_one (|d| > 1).
    """
    for name, df in (("a", a), ("b", b)):
        missing = [c for c in ("particle_id", "nhits") if c not in df.columns]
        if missing:
            raise DataError(f"hit_count_difference: table {name} lacks {', '.join(missing)}")
    m = a.merge(b[["particle_id", "nhits"]], on="particle_id", suffixes=("", "_b"), validate="one_to_one")
    keep = np.maximum(m["nhits"].to_numpy(), m["nhits_b"].to_numpy()) >= int(min_hits)
    if pt_min is not None:
        keep &= np.hypot(m["px"].to_numpy(np.float64), m["py"].to_numpy(np.float64)) >= float(pt_min)
    d = (m["nhits"].to_numpy(np.int64) - m["nhits_b"].to_numpy(np.int64))[keep]
    if len(d) == 0:
        return {"n": 0, "mean": float("nan"), "mean_abs": float("nan"), "sd": float("nan"), "equal": float("nan"),
                "within_one": float("nan"), "off_by_more_than_one": float("nan")}
    ad = np.abs(d)
    return {"n": int(len(d)), "mean": float(d.mean()), "mean_abs": float(ad.mean()), "sd": float(d.std()),
            "equal": float((d == 0).mean()), "within_one": float((ad <= 1).mean()),
            "off_by_more_than_one": float((ad > 1).mean())}


def layer_summary(event: Event) -> pd.DataFrame:
    """Per (volume_id, layer_id): hits, noise, particles (with >= 1 hit there), double_hit_rate (fraction of
    those particles with >= 2 hits on the layer) and hits_per_particle (signal hits / particles)."""
    if event.truth is None:
        raise DataError(f"event {event.event_id}: layer_summary needs the truth")
    m = event.hits[["hit_id", "volume_id", "layer_id"]].merge(event.truth[["hit_id", "particle_id"]], on="hit_id")
    key = ["volume_id", "layer_id"]
    out = m.groupby(key).size().rename("hits").to_frame()
    out["noise"] = m[m["particle_id"] == 0].groupby(key).size()
    per = m[m["particle_id"] != 0].groupby(key + ["particle_id"]).size()
    grouped = per.groupby(level=[0, 1])
    out["particles"] = grouped.size()
    out["double_hit_rate"] = grouped.apply(lambda s: float((s >= 2).mean()))
    out["hits_per_particle"] = grouped.sum() / out["particles"]
    out[["noise", "particles"]] = out[["noise", "particles"]].fillna(0).astype(int)
    return out


__all__ = ["hit_count_difference", "layer_summary"]
