"""The TrackML challenge's per-hit weights (the weights of the TrackML score).

Definition of the challenge (trackml-library ``weights.py``, accuracy phase), reproduced here:

- hits of a particle are ordered by |tz - vz| (distance along z from the particle's vertex),
  ties get the truncated average rank, as pandas' ``rank()`` then ``int`` does;
- hit-order weight: the proposal (10, 8, 6, 5, 3, 3, 3, 5, 6) for the first ... last hit,
  stretched to the particle's n hits by linear interpolation and normalised to sum 1 over
  the particle; particles with fewer than 4 hits get 0; for n > 20 the 20-hit row is used and
  hits from the 21st on get 0;
- pT weight: 0.2 up to pT = 0.5 GeV, rising linearly to 1 at 3 GeV, 1 above
  (0 below 0.05 GeV); noise hits (particle_id 0) get 0;
- weight = order weight x pT weight, normalised to sum 1 over the event.

``phase=2`` gives the throughput-phase (Codalab) variant, which also zeroes the hits of
particles whose generation (bits 24-35 of the particle id) is not 0, i.e. secondaries; the
reduced real event in data/real/mini (a throughput-phase event) carries those weights.
The challenge took a particle's hit count from the particles file's ``nhits``; here it is
counted in ``truth``, which is the same number for a complete event (and stays consistent
for a volume selection or a subset of particles).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trackstudy.errors import DataError

ORDER_PROPOSAL = (10.0, 8.0, 6.0, 5.0, 3.0, 3.0, 3.0, 5.0, 6.0)
ORDER_MIN_HITS = 4
ORDER_MAX_HITS = 20
PT_INF, PT_SUP, W_MIN, W_MAX = 0.5, 3.0, 0.2, 1.0


def order_weight_matrix(proposal=ORDER_PROPOSAL, min_hits: int = ORDER_MIN_HITS,
                        max_hits: int = ORDER_MAX_HITS) -> np.ndarray:
    """Matrix W[nhits, ihit] of hit-order weights (rows sum to 1 for nhits >= min_hits)."""
    w = np.zeros((max_hits + 1, max_hits))
    prop = np.asarray(proposal, np.float64)
    for n in range(min_hits, max_hits + 1):
        support = np.arange(len(prop)) * (n - 1) / (len(prop) - 1)
        row = np.interp(np.arange(n), support, prop)
        w[n, :n] = row / row.sum()
    return w


ORDER_MATRIX = order_weight_matrix()


def weight_pt(pt) -> np.ndarray:
    """pT weight (GeV): 0.2 in [0.05, 0.5], linear to 1 at 3 GeV, 1 above, 0 below 0.05."""
    return np.interp(np.asarray(pt, np.float64), [min(0.05, PT_INF), PT_INF, PT_SUP], [W_MIN, W_MIN, W_MAX],
                     left=0.0, right=W_MAX)


def weight_order(ihit, nhits) -> np.ndarray:
    """Hit-order weight of hit ``ihit`` (0-based) on a particle with ``nhits`` hits (arrays)."""
    ihit = np.asarray(ihit, np.int64)
    nhits = np.asarray(nhits, np.int64)
    n = np.minimum(nhits, ORDER_MAX_HITS)
    ok = (nhits >= ORDER_MIN_HITS) & (ihit < ORDER_MAX_HITS) & (ihit >= 0) & (ihit < nhits)
    return np.where(ok, ORDER_MATRIX[np.clip(n, 0, ORDER_MAX_HITS), np.clip(ihit, 0, ORDER_MAX_HITS - 1)], 0.0)


def trackml_weights(truth: pd.DataFrame, particles: pd.DataFrame, phase: int = 1) -> np.ndarray:
    """Per-hit TrackML weights for the rows of ``truth`` (float64, summing to 1 unless all are 0).

    phase: 1 = accuracy phase (Kaggle), 2 = throughput phase (secondaries get 0).

    truth needs particle_id and tz; particles needs particle_id, vz, px, py. The number of
    hits of a particle is counted in ``truth`` (as the challenge did), not read from nhits.
    """
    for name, df, cols in (("truth", truth, ("particle_id", "tz")), ("particles", particles, ("particle_id", "vz", "px", "py"))):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise DataError(f"trackml_weights: {name} lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    if phase not in (1, 2):
        raise DataError(f"trackml_weights: phase={phase!r}; expected 1 (accuracy) or 2 (throughput)")
    pid = truth["particle_id"].to_numpy(np.int64)
    n = len(pid)
    if n == 0:
        return np.zeros(0)
    ppid = particles["particle_id"].to_numpy(np.int64)
    if len(ppid) == 0:
        return np.zeros(n)
    order = np.argsort(ppid, kind="stable")
    sorted_ids = ppid[order]
    pos = np.clip(np.searchsorted(sorted_ids, pid), 0, len(sorted_ids) - 1)
    known = (pid != 0) & (sorted_ids[pos] == pid)
    if phase == 2:
        known &= ((pid >> 24) & 0xFFF) == 0
    prow = order[pos]
    vz = np.where(known, particles["vz"].to_numpy(np.float64)[prow], 0.0)
    ptv = np.hypot(particles["px"].to_numpy(np.float64), particles["py"].to_numpy(np.float64))
    w_pt = np.where(known, weight_pt(ptv[prow]), 0.0)

    absdz = np.abs(truth["tz"].to_numpy(np.float64) - vz)
    idx = np.lexsort((absdz, pid))  # by particle, then |dz|
    spid = pid[idx]
    sdz = absdz[idx]
    new_group = np.r_[True, spid[1:] != spid[:-1]]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    pos_in_group = np.arange(n) - group_start
    # ties (same particle, same |dz|): average rank, truncated like the challenge's astype(int)
    new_tie = new_group | np.r_[True, sdz[1:] != sdz[:-1]]
    tie_id = np.cumsum(new_tie) - 1
    tie_sum = np.bincount(tie_id, weights=pos_in_group)
    tie_cnt = np.bincount(tie_id)
    ihit_sorted = np.floor(tie_sum[tie_id] / tie_cnt[tie_id]).astype(np.int64)
    group_id = np.cumsum(new_group) - 1
    nhits_sorted = np.bincount(group_id)[group_id]
    ihit = np.empty(n, np.int64)
    nhits = np.empty(n, np.int64)
    ihit[idx] = ihit_sorted
    nhits[idx] = nhits_sorted
    w = np.where(known, weight_order(ihit, nhits) * w_pt, 0.0)
    total = w.sum()
    return w / total if total > 0 else w
