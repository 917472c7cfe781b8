"""Why a model misses the particles it misses: each reconstructable particle that no track
double-majority matches is put in the first stage of the pipeline that lost it.

A stage loses a particle when, after it, the largest group of the particle's hits that the stage
keeps together holds at most half of them (a track of that group could not hold the majority of
the particle's hits). The stages, tested in pipeline order:

contrastive models (:data:`REASONS`)
    ``locality``: no locality cluster holds more than half of the particle's hits (the attention
    never saw them together; track formation works cluster by cluster); ``embedding``: the hits
    connected by neighbour pairs within the track formation's radius (``eps`` of DBSCAN, the
    cosine ``threshold`` of kNN as a distance), inside one locality cluster;
edge models, the GNN and the doublet tokens (:data:`EDGE_REASONS`)
    ``graph``: the hits connected by the graph builder's candidate doublets; ``filter``: by those
    the edge filter kept (runs with one); ``edge classification``: by the edges that track
    building joins hits with (score above the threshold, the walkthrough's choice);

then, for both:

``merged``
    the hits are together, but the track that holds most of them is majority someone else's
    (other particles' or noise hits joined it);
``track formation``
    the rest: the hits are together and the track is the particle's, yet not double-majority
    matched: the size cap, the pT cut or the hit filter cut it, or a piece too small remained.

Reconstructable: pT > ``pt_min``, at least ``min_hits`` hits, as everywhere in the metrics.
:func:`miss_reasons` and :func:`edge_miss_reasons` work on arrays (tested on hand-made cases);
:func:`captured_misses` reads what a run's ``predict_event(capture=...)`` kept;
``scripts/bench_training.py`` prints the table per region.
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
from trackstudy.models.heads import EDGE_FAMILIES

__all__ = ["EDGE_REASONS", "REASONS", "captured_misses", "edge_miss_reasons", "event_misses", "miss_reasons",
           "miss_stages", "neighbour_radius", "summarize_misses"]

#: Outcomes of a reconstructable particle of a contrastive model, in the order they are tested.
REASONS = ("found", "locality", "embedding", "merged", "track formation")
#: The same for the edge models (GNN, doublet tokens).
EDGE_REASONS = ("found", "graph", "filter", "edge classification", "merged", "track formation")


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


def _classify(matching, hit_ids: np.ndarray, stages, *, pt_min: float, min_hits: int) -> pd.DataFrame:
    """The reasons of the reconstructable particles of ``matching``. ``stages``: (reason,
    largest(particle_id, rows) -> int) in pipeline order, rows indexing ``hit_ids``; a particle
    whose hits are mostly not among ``hit_ids`` is lost at the first stage."""
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
        if g is None or 2 * len(g) <= n_all:  # its hits mostly outside the model's input
            reasons.append(stages[0][0])
            continue
        rows = row.loc[g["hit_id"].to_numpy()].to_numpy()
        lost = next((reason for reason, largest in stages if 2 * largest(pid, rows) <= n_all), None)
        if lost is None:
            tracks = g["track_id"].to_numpy()
            best = pd.Series(tracks[tracks >= 0]).value_counts()
            t = best.index[0] if len(best) else -1
            merged = t >= 0 and (purity.get(t, 1.0) <= 0.5 or major.get(t, pid) != pid)
            lost = "merged" if merged else "track formation"
        reasons.append(lost)
    out = rec[["particle_id", "region", "pt", "nhits"]].reset_index(drop=True)
    out["reason"] = reasons
    return out


def miss_reasons(matching, hit_ids, embedding, cluster, radius: float, *, pt_min: float = 0.9,
                 min_hits: int = 3) -> pd.DataFrame:
    """One row per reconstructable particle of ``matching`` (a :class:`trackstudy.metrics.matching.Matching`
    of a contrastive model's submission): particle_id, region, pt, nhits, reason (one of :data:`REASONS`).

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
    stages = [("locality", lambda pid, rows: len(rows) if cluster is None
               else int(np.bincount(pd.factorize(cluster[rows])[0]).max())),
              ("embedding", lambda pid, rows: _largest_group(emb[rows], None if cluster is None else cluster[rows],
                                                             radius))]
    return _classify(matching, hit_ids, stages, pt_min=pt_min, min_hits=min_hits)


def _largest_by_particle(particle: np.ndarray, edges: np.ndarray) -> pd.Series:
    """particle id -> the size of its largest set of hits (rows; ``particle`` (N,) the particle of
    each, 0 noise) connected by ``edges`` (2, E) between hits of that particle."""
    src, dst = np.asarray(edges[0]), np.asarray(edges[1])
    same = (particle[src] == particle[dst]) & (particle[src] != 0)
    n = len(particle)
    a = sp.coo_matrix((np.ones(int(same.sum()), np.int8), (src[same], dst[same])), shape=(n, n))
    _, comp = connected_components(a.tocsr(), directed=False)
    sizes = pd.DataFrame({"p": particle, "c": comp}).groupby(["p", "c"]).size()
    return sizes.groupby(level="p").max()


def edge_miss_reasons(matching, hit_ids, edges: Mapping[str, np.ndarray], *, pt_min: float = 0.9,
                      min_hits: int = 3) -> pd.DataFrame:
    """One row per reconstructable particle of ``matching`` (an edge model's submission):
    particle_id, region, pt, nhits, reason (one of :data:`EDGE_REASONS`).

    hit_ids (N,): the hits the graph was built on; edges: reason -> (2, E) edges over those rows
    after that stage ("graph", "filter" where the run has one, "edge classification"), as
    ``predict_graph_event``'s ``capture`` holds them."""
    hit_ids = np.asarray(hit_ids)
    order = [r for r in EDGE_REASONS if r in edges]
    unknown = sorted(set(edges) - set(EDGE_REASONS))
    if unknown or "graph" not in edges or "edge classification" not in edges:
        raise DataError(f"miss reasons: edges of stages {sorted(edges)}; expected 'graph', ['filter',] "
                        "'edge classification'")
    for name in order:
        e = np.asarray(edges[name])
        if e.ndim != 2 or e.shape[0] != 2 or (e.size and (e.min() < 0 or e.max() >= len(hit_ids))):
            raise DataError(f"miss reasons: the {name!r} edges must be (2, E) rows of the {len(hit_ids)} hits, "
                            f"got shape {e.shape}")
    truth = matching.hits.set_index("hit_id")["particle_id"]
    particle = truth.reindex(hit_ids).fillna(0).to_numpy(np.int64)
    largest = {name: _largest_by_particle(particle, np.asarray(edges[name])) for name in order}
    stages = [(name, lambda pid, rows, t=largest[name]: int(t.get(pid, 0))) for name in order]
    return _classify(matching, hit_ids, stages, pt_min=pt_min, min_hits=min_hits)


def summarize_misses(table: pd.DataFrame, reasons=None) -> pd.DataFrame:
    """Fractions of the reconstructable particles per reason (columns ``reasons``: default
    :data:`EDGE_REASONS` when the table holds one of its own, else :data:`REASONS`), one row per
    region and one for all, with the particle count ``n``."""
    if reasons is None:
        own = set(EDGE_REASONS) - set(REASONS)
        reasons = EDGE_REASONS if own & set(table["reason"]) else REASONS
    rows = []
    for region, t in [("all", table), *((r, table[table["region"] == r]) for r in ("barrel", "endcap"))]:
        if not len(t):
            continue
        frac = t["reason"].value_counts(normalize=True)
        rows.append({"region": region, "n": len(t), **{r: float(frac.get(r, 0.0)) for r in reasons}})
    return pd.DataFrame(rows)


def miss_stages(model) -> tuple[str, ...] | None:
    """The reasons (:data:`REASONS` or :data:`EDGE_REASONS`) a run of ``model`` can be given, or
    None where it has none: a contrastive run whose track formation has no fixed neighbour radius
    (:func:`neighbour_radius`), or a model without embeddings or graph stages."""
    family = getattr(model, "family", None)
    if family in EDGE_FAMILIES:
        return EDGE_REASONS
    if family == "contrastive" and getattr(model.track_params, "method", None) in ("dbscan", "knn"):
        return REASONS
    return None


def _check_inputs(model, event) -> None:
    if getattr(model, "family", None) not in ("contrastive", *EDGE_FAMILIES):
        raise ConfigError(f"miss reasons: a contrastive run (embeddings) or an edge model's is needed, got "
                          f"{getattr(model, 'family', None)!r}")
    if event.truth is None or event.particles is None:
        raise DataError(f"event {event.event_id}: miss reasons need truth and particles")


def captured_misses(model, event, submission: pd.DataFrame, capture: Mapping, *, pt_min: float = 0.9,
                    min_hits: int = 3) -> pd.DataFrame:
    """:func:`miss_reasons` (or :func:`edge_miss_reasons`) of ``event`` from the ``submission`` that a
    run of ``model`` made of it and the ``capture`` that :func:`trackstudy.inference.predict_event`
    filled on the way (no second run)."""
    _check_inputs(model, event)
    m = match_tracks(submission, event.truth, event.particles, hits=event.hits, min_hits=min_hits)
    if model.family in EDGE_FAMILIES:
        return edge_miss_reasons(m, capture["hit_ids"], capture["edges"], pt_min=pt_min, min_hits=min_hits)
    return miss_reasons(m, capture["hit_ids"], capture["outputs"]["embedding"], capture["cluster"],
                        neighbour_radius(model.track_params), pt_min=pt_min, min_hits=min_hits)


def event_misses(model, event, *, locality: Mapping | None, pixel_only: bool = True, pt_min: float = 0.9,
                 min_hits: int = 3) -> pd.DataFrame:
    """The miss reasons of a trained ``model`` (from ``load_run``: contrastive, or an edge model) on
    ``event`` (hits, truth, particles), run with ``locality`` (the run config's section)."""
    _check_inputs(model, event)
    capture: dict = {}
    sub, _ = predict_event(model, event.hits, locality=locality, event_id=event.event_id, pixel_only=pixel_only,
                           capture=capture)
    return captured_misses(model, event, sub, capture, pt_min=pt_min, min_hits=min_hits)
