"""Why a contrastive model misses the particles it misses: each reconstructable particle that no
track double-majority matches is put in the first stage of the pipeline that lost it.

The reasons, tested in this order:

``locality``
    no locality cluster holds more than half of the particle's hits (the attention never saw
    them together, and track formation works cluster by cluster);
``embedding``
    the model did not put the hits together: the largest group of them connected by neighbour
    pairs within the track formation's radius (``eps`` of DBSCAN, the cosine ``threshold`` of kNN
    as a distance), inside one locality cluster, holds at most half of them;
``merged``
    the hits are together, but the track that holds most of them is majority someone else's
    (other particles' or noise hits joined it);
``track formation``
    the rest: the hits are together and the track is the particle's, yet not double-majority
    matched: the size cap, the pT cut or the hit filter cut it, or a piece too small remained.

Reconstructable: pT > ``pt_min``, at least ``min_hits`` hits, as everywhere in the metrics.
:func:`miss_reasons` works on arrays (tested on hand-made cases); :func:`event_misses` runs a
trained run on an event; ``scripts/diagnose_misses.py`` prints the table per region.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from trackstudy.errors import ConfigError, DataError
from trackstudy.inference import predict_event
from trackstudy.metrics.matching import match_tracks, reconstructable

__all__ = ["REASONS", "captured_misses", "event_misses", "miss_reasons", "neighbour_radius", "summarize_misses"]

#: Outcomes of a reconstructable particle, in the order they are tested.
REASONS = ("found", "locality", "embedding", "merged", "track formation")


def neighbour_radius(params) -> float:
    """The distance between unit embeddings within which track formation joins two hits: DBSCAN's
    ``eps``, or for kNN the distance of the cosine ``threshold`` (|u - v| = sqrt(2 - 2 cos))."""
    method = getattr(params, "method", None)
    if method == "dbscan":
        return float(params.eps)
    if method == "knn":
        return float(np.sqrt(max(2.0 - 2.0 * params.threshold, 0.0)))
    raise ConfigError(f"miss reasons: track formation {method!r} has no fixed neighbour radius (dbscan or knn)")


def _largest_group(emb: np.ndarray, cluster: np.ndarray | None, radius: float) -> int:
    """Size of the largest set of the rows of ``emb`` (unit vectors) connected by pairs within
    ``radius`` of each other (and in one ``cluster``)."""
    d = np.sqrt(np.clip(2.0 - 2.0 * emb @ emb.T, 0.0, None))
    near = d <= radius
    if cluster is not None:
        near &= cluster[:, None] == cluster[None, :]
    _, lab = connected_components(sp.csr_matrix(near), directed=False)
    return int(np.bincount(lab).max())


def miss_reasons(matching, hit_ids, embedding, cluster, radius: float, *, pt_min: float = 0.9,
                 min_hits: int = 3) -> pd.DataFrame:
    """One row per reconstructable particle of ``matching`` (a :class:`trackstudy.metrics.matching.Matching`
    of the model's submission): particle_id, region, pt, nhits, reason (one of :data:`REASONS`).

    hit_ids (N,): the hits through the network, rows of ``embedding`` (N, D) (normalised here) and
    of ``cluster`` (N,) locality labels (None: one cluster); radius: :func:`neighbour_radius`."""
    hit_ids = np.asarray(hit_ids)
    emb = np.asarray(embedding, np.float64)
    if emb.ndim != 2 or len(emb) != len(hit_ids):
        raise DataError(f"miss reasons: the embedding has shape {emb.shape}, expected ({len(hit_ids)}, D)")
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    if cluster is not None:
        cluster = np.asarray(cluster)
        if len(cluster) != len(hit_ids):
            raise DataError(f"miss reasons: {len(cluster)} cluster labels for {len(hit_ids)} hits")
    parts = matching.particles
    rec = parts[reconstructable(parts, pt_min=pt_min, min_hits=min_hits)]
    h = matching.hits
    row = pd.Series(np.arange(len(hit_ids)), index=hit_ids)
    h = h[h["particle_id"].isin(rec["particle_id"]) & h["hit_id"].isin(hit_ids)]
    purity = matching.tracks.set_index("track_id")["purity"]
    major = matching.tracks.set_index("track_id")["major_particle_id"]
    by_particle = {pid: g for pid, g in h.groupby("particle_id")}
    reasons = []
    for pid, found, n_all in zip(rec["particle_id"], rec["dm_matched"], rec["nhits"]):
        g = by_particle.get(pid)
        if found:
            reasons.append("found")
            continue
        if g is None or 2 * len(g) <= n_all:  # its hits mostly outside the network's input
            reasons.append("locality")
            continue
        rows = row.loc[g["hit_id"].to_numpy()].to_numpy()
        cl = cluster[rows] if cluster is not None else None
        if cl is not None and 2 * np.bincount(pd.factorize(cl)[0]).max() <= n_all:
            reasons.append("locality")
        elif 2 * _largest_group(emb[rows], cl, radius) <= n_all:
            reasons.append("embedding")
        else:
            tracks = g["track_id"].to_numpy()
            best = pd.Series(tracks[tracks >= 0]).value_counts()
            t = best.index[0] if len(best) else -1
            merged = t >= 0 and (purity.get(t, 1.0) <= 0.5 or major.get(t, pid) != pid)
            reasons.append("merged" if merged else "track formation")
    out = rec[["particle_id", "region", "pt", "nhits"]].reset_index(drop=True)
    out["reason"] = reasons
    return out


def summarize_misses(table: pd.DataFrame) -> pd.DataFrame:
    """Fractions of the reconstructable particles per reason (columns :data:`REASONS`), one row
    per region and one for all, with the particle count ``n``."""
    rows = []
    for region, t in [("all", table), *((r, table[table["region"] == r]) for r in ("barrel", "endcap"))]:
        if not len(t):
            continue
        frac = t["reason"].value_counts(normalize=True)
        rows.append({"region": region, "n": len(t), **{r: float(frac.get(r, 0.0)) for r in REASONS}})
    return pd.DataFrame(rows)


def _check_inputs(model, event) -> None:
    if getattr(model, "family", None) != "contrastive":
        raise ConfigError(f"miss reasons: a contrastive run is needed (embeddings), got {getattr(model, 'family', None)!r}")
    if event.truth is None or event.particles is None:
        raise DataError(f"event {event.event_id}: miss reasons need truth and particles")


def captured_misses(model, event, submission: pd.DataFrame, capture: Mapping, *, pt_min: float = 0.9,
                    min_hits: int = 3) -> pd.DataFrame:
    """:func:`miss_reasons` of ``event`` from the ``submission`` that a run of ``model`` made of it and
    the ``capture`` that :func:`trackstudy.inference.predict_event` filled on the way (no second run)."""
    _check_inputs(model, event)
    m = match_tracks(submission, event.truth, event.particles, hits=event.hits, min_hits=min_hits)
    return miss_reasons(m, capture["hit_ids"], capture["outputs"]["embedding"], capture["cluster"],
                        neighbour_radius(model.track_params), pt_min=pt_min, min_hits=min_hits)


def event_misses(model, event, *, locality: Mapping | None, pixel_only: bool = True, pt_min: float = 0.9,
                 min_hits: int = 3) -> pd.DataFrame:
    """:func:`miss_reasons` of a trained contrastive ``model`` (from ``load_run``) on ``event`` (hits,
    truth, particles), run with ``locality`` (the run config's section)."""
    _check_inputs(model, event)
    capture: dict = {}
    sub, _ = predict_event(model, event.hits, locality=locality, event_id=event.event_id, pixel_only=pixel_only,
                           capture=capture)
    return captured_misses(model, event, sub, capture, pt_min=pt_min, min_hits=min_hits)
