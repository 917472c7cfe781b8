"""Track building from scored doublets: the GNN's edge scores -> track candidates -> Kaggle submission.

Two methods (``GNNTrackParams.method``), both on the edges whose score passes ``threshold``:

- ``components``: connected components of those edges (scipy.sparse.csgraph, weak connection),
  the Exa.TrkX / ACORN labelling; two tracks that share one wrong edge become one candidate.
- ``walk``: a simplified walkthrough for ambiguous junctions: an edge is kept when it is the
  best-scoring outgoing edge of its inner hit or the best-scoring incoming edge of its outer hit,
  so a branch that is neither end's best is cut before the components are taken. (Keeping only
  edges that are best for both ends breaks every track with an overlap hit, where a layer holds two
  hits of the particle.) As ACORN's walkthrough follows second-best branches above a higher
  threshold, ``branch`` > 0 also keeps an edge that is the second-best of its inner or its outer
  hit when its score is at least ``branch``.

With ``join`` > 0 a second pass mends tracks that a missing edge split in two: an edge not chosen
(below ``threshold``, or cut by the walkthrough) but scoring at least ``join`` links the outer end
of one candidate (a hit with no chosen outgoing edge) to the inner end of another (no chosen
incoming edge) when it is the best such edge of both of its hits; pieces of one particle, each
holding half of its hits, are fakes by the double-majority rule, the joined track is not.

With a track-quality scorer (:mod:`trackstudy.postprocessing.quality`, a run's
``track_quality.npz``) the candidates of every track-building variant (e.g. several thresholds
and both methods) are pooled and the scorer chooses among them, as for the hit-token models:
the scorer's features are those of the candidates' hits, not of the model that formed them.

Components with fewer than ``min_hits`` hits become one-hit tracks, and so do those whose pT,
estimated from the mean curvature of their edges (circle through the beam line and the two hits),
is below ``min_pt`` GeV: pieces of low-pT particles are fakes by the double-majority rule. :func:`predict_graph_event`
runs one event through the graph pipeline (graph construction -> edge classification -> track
building, each timed); ``trackstudy.inference.predict_event`` calls it for the runs of edge models
(the GNN and the doublet-token encoder: any model ``(x, edge_index, edge_attr) -> logits`` with a
``builder`` and ``track_params``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components

from trackstudy.config import PIXEL_VOLUMES
from trackstudy.device import StageClock, resolve_device, synchronize
from trackstudy.errors import ConfigError, DataError
from trackstudy.graphs.doublets import curvature_pt
from trackstudy.graphs.module_map import build_graph
from trackstudy.postprocessing.quality import apply_variants, choose_candidates, hit_columns
from trackstudy.postprocessing.track_formation import labels_to_track_ids, submission

__all__ = ["GNN_STAGES", "GNN_TUNE_GRID", "METHODS", "GNNTrackParams", "pooled_candidates", "predict_graph_event",
           "selected_edges", "tracks_from_edges"]

#: Stages timed by :func:`predict_graph_event`, in pipeline order (plus "total").
GNN_STAGES = ("graph_construction", "edge_classification", "track_building")
METHODS = ("components", "walk")
#: What the trainer tries on the validation events when the run config gives no ``tune.grid``.
GNN_TUNE_GRID = [{"threshold": [0.3, 0.5, 0.7, 0.8, 0.9], "method": ["components", "walk"], "min_pt": [0.0, 0.5]}]


@dataclass
class GNNTrackParams:
    """threshold: minimal edge score (sigmoid); method: components | walk; min_hits: smaller
    candidates are split into one-hit tracks; min_pt: GeV, so are candidates of a lower pT estimate;
    branch: with method walk, the score from which second-best edges are kept too (0: never);
    join: the score from which an edge joins two candidates end to end (0: never)."""

    threshold: float = 0.5
    method: str = "components"
    min_hits: int = 3
    min_pt: float = 0.0
    branch: float = 0.0
    join: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"GNNTrackParams.threshold: must be in [0, 1], got {self.threshold}")
        if self.method not in METHODS:
            raise ConfigError(f"GNNTrackParams.method: {self.method!r} unknown; choose from {', '.join(METHODS)}")
        if self.min_hits < 1:
            raise ConfigError(f"GNNTrackParams.min_hits: must be >= 1, got {self.min_hits}")
        if self.min_pt < 0:
            raise ConfigError(f"GNNTrackParams.min_pt: must be >= 0, got {self.min_pt}")
        if not 0.0 <= self.branch <= 1.0:
            raise ConfigError(f"GNNTrackParams.branch: must be in [0, 1] (0: no second-best branches), got {self.branch}")
        if not 0.0 <= self.join <= 1.0:
            raise ConfigError(f"GNNTrackParams.join: must be in [0, 1] (0: no joining), got {self.join}")

    def record(self) -> dict:
        """How runs store it (checkpoints, summary.json): ``{"kind": "gnn", **fields}``."""
        return {"kind": "gnn", **asdict(self)}

    @classmethod
    def from_record(cls, record: dict) -> GNNTrackParams:
        d = {k: v for k, v in dict(record).items() if k != "kind"}
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise ConfigError(f"track_params (gnn): unknown field {unknown[0]!r}; valid: {', '.join(valid)}")
        return cls(**d)


def _rank_per(node: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Int (E,): each edge's rank by score among the edges sharing ``node`` (0: the best; ties in
    edge order)."""
    order = np.lexsort((-score, node))
    sorted_node = node[order]
    start = np.ones(len(order), bool)
    start[1:] = sorted_node[1:] != sorted_node[:-1]
    group_start = np.maximum.accumulate(np.where(start, np.arange(len(order)), 0))
    rank = np.empty(len(node), np.int64)
    rank[order] = np.arange(len(order)) - group_start
    return rank


def _end_joins(n: int, src, dst, scores, keep, join: float) -> np.ndarray:
    """Mask (E,) of the edges that join two candidates (components of the ``keep`` edges) end to
    end: score >= ``join``, from a hit without a kept outgoing edge to one without a kept incoming
    edge of another candidate, and the best such edge of both hits."""
    a = sp.coo_matrix((np.ones(int(keep.sum()), np.int8), (src[keep], dst[keep])), shape=(n, n)).tocsr()
    _, comp = connected_components(a, directed=True, connection="weak")
    has_out, has_in = np.zeros(n, bool), np.zeros(n, bool)
    has_out[src[keep]], has_in[dst[keep]] = True, True
    cand = np.flatnonzero(~keep & (scores >= join) & (comp[src] != comp[dst]) & ~has_out[src] & ~has_in[dst])
    out = np.zeros(len(src), bool)
    if len(cand):
        s, d, sc = src[cand], dst[cand], scores[cand]
        out[cand[(_rank_per(s, sc) == 0) & (_rank_per(d, sc) == 0)]] = True
    return out


def selected_edges(src, dst, scores, params: GNNTrackParams | None = None) -> np.ndarray:
    """Mask (E,) of the scored edges src -> dst (hit rows) that track building joins hits with: a
    score of at least ``params.threshold`` and, for ``walk``, the best (or a high second-best) edge
    of one of their ends; with ``join``, the edges that join two candidates end to end as well."""
    p = params or GNNTrackParams()
    src, dst, scores = (np.asarray(a).reshape(-1) for a in (src, dst, scores))
    keep = scores >= p.threshold
    if p.method == "walk" and keep.any():
        idx = np.flatnonzero(keep)
        s, d, sc = src[idx], dst[idx], scores[idx]
        r_out, r_in = _rank_per(s, sc), _rank_per(d, sc)
        best = (r_out == 0) | (r_in == 0)
        if p.branch > 0:  # ACORN: second-best branches with a high score are followed too
            best |= ((r_out == 1) | (r_in == 1)) & (sc >= p.branch)
        keep[idx[~best]] = False
    if p.join > 0 and len(src):
        keep |= _end_joins(int(max(src.max(), dst.max())) + 1, src, dst, scores, keep, p.join)
    return keep


def tracks_from_edges(n: int, src, dst, scores, params: GNNTrackParams | None = None, *,
                      curvature=None) -> np.ndarray:
    """Track label (N,) int64 of n hits from scored edges src -> dst (hit rows); -1: one-hit track.
    ``curvature``: (E,) 1/mm of each edge, needed by ``params.min_pt`` > 0."""
    return _tracks_and_edges(n, src, dst, scores, params, curvature=curvature)[0]


def _tracks_and_edges(n: int, src, dst, scores, params: GNNTrackParams | None = None, *,
                      curvature=None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`tracks_from_edges` and the :func:`selected_edges` mask it joined hits with."""
    p = params or GNNTrackParams()
    src, dst, scores = (np.asarray(a).reshape(-1) for a in (src, dst, scores))
    if not (len(src) == len(dst) == len(scores)):
        raise DataError(f"track building: {len(src)} sources, {len(dst)} targets and {len(scores)} scores differ")
    if p.min_pt > 0:
        if curvature is None or len(np.asarray(curvature).reshape(-1)) != len(src):
            raise DataError("track building: min_pt > 0 needs the curvature of every edge")
        curvature = np.abs(np.asarray(curvature, np.float64).reshape(-1))
    if len(src) and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n):
        raise DataError(f"track building: edge end outside the {n} hits")
    selected = selected_edges(src, dst, scores, p)
    src, dst = src[selected], dst[selected]
    if p.min_pt > 0:
        curvature = curvature[selected]
    a = sp.coo_matrix((np.ones(len(src), np.int8), (src, dst)), shape=(n, n)).tocsr()
    _, labels = connected_components(a, directed=True, connection="weak")
    labels = labels.astype(np.int64)
    size = np.bincount(labels, minlength=labels.max(initial=-1) + 1)
    ok = size[labels] >= p.min_hits
    if p.min_pt > 0 and len(src):
        n_lab = len(size)
        mean_curv = (np.bincount(labels[src], weights=curvature, minlength=n_lab)
                     / np.maximum(np.bincount(labels[src], minlength=n_lab), 1))
        ok &= curvature_pt(mean_curv)[labels] >= p.min_pt
    return np.where(ok, labels, -1), selected


def pooled_candidates(labels) -> tuple[np.ndarray, np.ndarray]:
    """The track candidates of several labellings of the same hits, pooled: labels is a list of
    (N,) int track labels (-1: one-hit track, not a candidate). Returns (rows, track): the hit of
    each candidate row and its candidate label, distinct across the labellings."""
    rows, track, offset = [], [], 0
    for lab in labels:
        lab = np.asarray(lab, dtype=np.int64).ravel()
        r = np.flatnonzero(lab >= 0)
        rows.append(r)
        track.append(lab[r] + offset)
        offset += int(lab.max(initial=-1)) + 1
    cat = (lambda a: np.concatenate(a) if a else np.zeros(0, np.int64))
    return cat(rows), cat(track)


@torch.no_grad()
def predict_graph_event(model, hits: pd.DataFrame, *, event_id: int = 0, device=None,
                        params: GNNTrackParams | None = None, backend: str | None = None,
                        capture: dict | None = None, quality=None, variants=None) -> tuple[pd.DataFrame, dict]:
    """One event through a GNN run: pixel hits -> doublets (the model's graph builder: windows, or
    metric learning, whose hit embedding and radius search count in graph_construction) -> edge
    scores -> tracks. Returns (submission of every input hit, timings of :data:`GNN_STAGES`, "total",
    "n_hits", "n_edges"). Hits outside the pixel volumes become one-hit tracks. ``backend``: the
    attention backend of a model with an encoder (the doublet tokens; None or "graph": its own).
    ``capture``: a dict to receive, for diagnostics (:mod:`trackstudy.study.misses`), the pixel
    ``hit_ids`` and the edges (2, E) over them at each graph stage, in order: ``edges`` maps
    "graph" (the builder's candidates before an edge filter), "filter" (after it; only with one)
    and "edge classification" (those track building joined hits with).

    ``quality``: a :class:`~trackstudy.postprocessing.quality.TrackQuality` that chooses the tracks
    among the candidates of the track-building variants (``variants``, default its own: parameter
    overrides of ``params``). ``capture`` also receives ``candidates`` ({rows, track, features} of
    every variant's candidates, as :func:`trackstudy.inference.quality_candidates` gives them, for
    fitting a scorer); with variants its "edge classification" edges are those of the first."""
    kwargs = {}
    if backend not in (None, "graph"):
        if getattr(model, "encoder_cfg", None) is None:
            raise ConfigError(f"backend {backend!r}: a {getattr(model, 'family', 'gnn')} model has no attention")
        kwargs["backend"] = backend
    for col in ("hit_id", "x", "y", "z", "volume_id", "layer_id"):
        if col not in hits.columns:
            raise DataError(f"event {event_id} hits: column {col!r} is missing (the GNN builds its graph from it)")
    dev = next(model.parameters()).device if device is None else resolve_device(device)
    model.to(dev)
    was_training = model.training
    model.eval()
    clock = StageClock(dev)
    t0 = time.perf_counter()
    try:
        with clock("graph_construction"):
            keep = hits["volume_id"].isin(PIXEL_VOLUMES).to_numpy()
            sel = hits.loc[keep]
            graph = build_graph(model.builder, sel, source=f"event {event_id} hits")
            x = torch.from_numpy(graph["x"]).to(dev)
            ei = torch.from_numpy(graph["edge_index"]).to(dev)
            ea = torch.from_numpy(graph["edge_attr"]).to(dev)
        with clock("edge_classification"):
            scores = torch.sigmoid(model(x, ei, ea, **kwargs)).float().cpu().numpy() if ei.shape[1] else np.zeros(0)
        with clock("track_building"):
            if variants is None and quality is not None:
                variants = quality.variants
            built = [_tracks_and_edges(len(sel), graph["edge_index"][0], graph["edge_index"][1], scores, p,
                                       curvature=graph["curvature"])
                     for p in apply_variants(params or model.track_params, variants)]
            labels, selected = built[0]
            if quality is not None or capture is not None:  # every variant's candidates, scored
                rows, cand = pooled_candidates([b[0] for b in built])
                _, chosen, _ = choose_candidates(quality, hit_columns(sel, source=f"event {event_id} hits"), rows, cand,
                                                 capture=capture)
                if chosen is not None:
                    labels = chosen
            track = np.full(len(hits), -1, np.int64)
            track[keep] = labels
            sub = submission(event_id, hits["hit_id"].to_numpy(), labels_to_track_ids(track))
    finally:
        model.train(was_training)
    synchronize(dev)
    timings = {s: clock.seconds.get(s, 0.0) for s in GNN_STAGES}
    timings.update(total=time.perf_counter() - t0, n_hits=int(len(sel)), n_edges=int(ei.shape[1]))
    if capture is not None:  # after the clock: diagnostics, not pipeline work
        edges = {}
        if getattr(model, "edge_filter", None) is not None:  # the candidates before the filter, built again
            edges["graph"] = np.stack(model.base_builder.build(sel, source=f"event {event_id} hits"))
        edges["filter" if edges else "graph"] = graph["edge_index"]
        edges["edge classification"] = graph["edge_index"][:, selected]
        capture.update(hit_ids=sel["hit_id"].to_numpy(), edges=edges)
    return sub, timings
