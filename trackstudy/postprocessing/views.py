"""One partition of the hits from the track candidates of several vertex views.

With barrel views (:mod:`trackstudy.locality.views`) every barrel hit is seen once per view and
tracks are formed view by view, so a hit sits in one candidate per view. A track from a vertex
at z_v is whole in the view nearest z_v and may be split in the others. :func:`resolve_views`
keeps one candidate per hit:

1. Each candidate's longitudinal impact z0 is the least-squares line z = z0 + r * cot(theta)
   through its hits (a helix is a straight line in (s, z) and s = r to 0.1% for pT > 0.5 GeV
   in the pixel volumes); the candidate is *at home* when its view's vertex is the one nearest
   that z0.
2. Candidates whose hits leave the line by more than ``max_rms`` (RMS of the z residuals, mm)
   mix particles and are not taken, nor candidates away from home with fewer than
   ``min_hits_away`` hits: every view gets its own chance to form a short candidate from the hits
   of a low-pT particle, and three-hit pieces made most of the fakes the views added.
3. The others are taken by size (larger first: the whole track of the view where it is compact
   before its pieces in the others), then at home first, then by the RMS of the line fit
   (smaller first); a candidate claims its still free hits when at least ``min_free`` of them,
   and more than half of its hits, are free; a split piece of a track already taken, or a copy
   of an endcap track formed in another view, finds its hits gone and is dropped.
4. Hits no candidate claimed are one-hit tracks.

The order and both cuts were chosen on the validation events of the mu = 200 config for DM
efficiency minus fake rate (the held-out events never): taking candidates at home first, or only
at home, found fewer particles; without the away cut the fake rate rose by 5 points for 2 points
of DM efficiency (docs/results.md, "Full events").

A greedy pass because no library solves this set packing: the candidates are few (one per track
and view) and the order above decides every conflict by a rule one can check by hand.
"""

from __future__ import annotations

import numpy as np

from trackstudy.errors import ConfigError, DataError

#: A candidate whose hits span less than this in r (mm) has no z0 fit (two hits of one layer).
MIN_LEVER_MM = 5.0
#: Candidates whose z residuals from their line have a larger RMS (mm) are not taken.
MAX_RMS_MM = 1.0
#: Candidates away from their home view need at least this many hits.
MIN_HITS_AWAY = 4


def line_fits(track: np.ndarray, r: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate label 0..T-1 of ``track`` (M,): the least-squares line z = z0 + slope * r
    through its hits; returns ``(z0, slope, rms)`` (T,), NaN where the hits span less than
    :data:`MIN_LEVER_MM` in r (z0, slope) and 0 rms for those."""
    t = np.asarray(track, dtype=np.int64)
    n_t = int(t.max()) + 1 if len(t) else 0
    w = np.bincount(t, minlength=n_t).astype(np.float64)
    mean_r = np.bincount(t, r, n_t) / np.maximum(w, 1)
    mean_z = np.bincount(t, z, n_t) / np.maximum(w, 1)
    dr, dz = r - mean_r[t], z - mean_z[t]
    srr = np.bincount(t, dr * dr, n_t)
    srz = np.bincount(t, dr * dz, n_t)
    span = np.full(n_t, -np.inf)
    np.maximum.at(span, t, r)
    low = np.full(n_t, np.inf)
    np.minimum.at(low, t, r)
    span = span - low
    ok = span >= MIN_LEVER_MM
    slope = np.where(ok, srz / np.where(ok, srr, 1.0), np.nan)
    z0 = mean_z - slope * mean_r
    resid = np.where(ok[t], dz - np.nan_to_num(slope)[t] * dr, 0.0)
    rms = np.sqrt(np.bincount(t, resid * resid, n_t) / np.maximum(w, 1))
    return z0, slope, rms


def resolve_views(n_hits: int, rows, track, view, vertices, r, z, *, min_free: int = 2,
                  max_rms: float = MAX_RMS_MM, min_hits_away: int = MIN_HITS_AWAY
                  ) -> tuple[np.ndarray, np.ndarray]:
    """One track per hit from the candidates of every view (see the module docstring).

    n_hits: hits of the event. rows (M,): the hit (0..n_hits-1) of each candidate row; track
    (M,): its candidate label (unique across views: each view's labels offset past the previous
    view's); view (M,): the view (index into ``vertices``) the candidate was formed in; vertices
    (K,): the views' vertex z (mm); r, z (n_hits,): the hits' transverse radius and z (mm).
    A hit appears at most once per candidate. max_rms: the RMS cut of the line fit (mm; inf: none);
    min_hits_away: the fewest hits of a candidate taken away from its home view (1: no cut).

    Returns ``(labels, chosen)``: (n_hits,) int64 consecutive track labels (unclaimed hits
    alone) and the view of the candidate each hit went to (-1: none).
    """
    rows, track, view = (np.asarray(a, dtype=np.int64).ravel() for a in (rows, track, view))
    vertices = np.asarray(vertices, dtype=np.float64).ravel()
    r, z = np.asarray(r, dtype=np.float64).ravel(), np.asarray(z, dtype=np.float64).ravel()
    if not (len(rows) == len(track) == len(view)):
        raise DataError(f"resolve_views: rows, track and view have different lengths "
                        f"({len(rows)}, {len(track)}, {len(view)})")
    if len(r) != n_hits or len(z) != n_hits:
        raise DataError(f"resolve_views: r and z need one value per hit ({n_hits}), got {len(r)} and {len(z)}")
    if len(rows) and (rows.min() < 0 or rows.max() >= n_hits):
        raise DataError(f"resolve_views: rows must index the {n_hits} hits")
    if len(vertices) == 0 or (len(view) and (view.min() < 0 or view.max() >= len(vertices))):
        raise DataError("resolve_views: every row needs a view among the vertices")
    if min_free < 1:
        raise ConfigError(f"resolve_views: min_free={min_free} must be >= 1")
    if not max_rms > 0:
        raise ConfigError(f"resolve_views: max_rms={max_rms} must be a positive number of mm (inf: no cut)")
    chosen = np.full(n_hits, -1, dtype=np.int64)
    if len(rows):
        _, t = np.unique(track, return_inverse=True)
        t = t.ravel()
        n_t = int(t.max()) + 1
        size = np.bincount(t, minlength=n_t)
        cand_view = np.zeros(n_t, dtype=np.int64)
        cand_view[t] = view
        z0, _, rms = line_fits(t, r[rows], z[rows])
        home = np.isfinite(z0) & (nearest_view(z0, vertices) == cand_view)
        order = np.lexsort((np.arange(n_t), rms, ~home, -size))
        order = order[(size[order] >= min_free) & (rms[order] <= max_rms)
                      & (home[order] | (size[order] >= min_hits_away))]
        labels, claimed = claim_in_order(n_hits, rows, t, order, min_free=min_free)
        chosen = np.where(claimed >= 0, cand_view[np.maximum(claimed, 0)], -1)
    else:  # no candidates: every hit alone
        labels = np.arange(n_hits, dtype=np.int64)
    return labels, chosen


def nearest_view(z0, vertices) -> np.ndarray:
    """Index of the view vertex nearest each z0 (mm); a candidate without a line fit (NaN) goes
    to the view nearest z = 0."""
    z0 = np.nan_to_num(np.asarray(z0, dtype=np.float64), nan=0.0)
    vertices = np.asarray(vertices, dtype=np.float64)
    return np.argmin(np.abs(z0[:, None] - vertices[None, :]), axis=1)


def claim_in_order(n_hits: int, rows: np.ndarray, t: np.ndarray, order, *, min_free: int = 2
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The greedy pass of every resolution: the candidates ``order`` (labels 0..T-1 of ``t``, the
    candidate of each row; ``rows`` the hit of each row) claim, in turn, their still free hits when
    at least ``min_free`` of them, and more than half of the candidate's hits, are free. Returns
    ``(labels, claimed)``: (n_hits,) consecutive track labels (unclaimed hits alone) and the
    candidate each hit went to (-1: none)."""
    labels = np.full(n_hits, -1, dtype=np.int64)
    claimed = np.full(n_hits, -1, dtype=np.int64)
    if len(t):
        size = np.bincount(t)
        by_track = np.argsort(t, kind="stable")
        starts = np.concatenate([[0], np.cumsum(size)])
        next_label = 0
        for c in order:
            hits = rows[by_track[starts[c]:starts[c + 1]]]
            free = hits[labels[hits] < 0]
            if len(free) >= min_free and 2 * len(free) > len(hits):
                labels[free] = next_label
                claimed[free] = c
                next_label += 1
    alone = labels < 0
    labels[alone] = labels.max(initial=-1) + 1 + np.arange(int(alone.sum()))
    return labels, claimed


__all__ = ["MAX_RMS_MM", "MIN_HITS_AWAY", "MIN_LEVER_MM", "claim_in_order", "line_fits", "nearest_view",
           "resolve_views"]
