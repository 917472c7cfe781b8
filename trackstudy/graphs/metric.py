"""Graph construction by metric learning (the Exa.TrkX "embedding" stage): the array side.

An MLP (:mod:`trackstudy.models.metric_embedding`) maps each hit's features to a point on the unit
sphere of ``emb_dim`` dimensions, trained so that the two hits of a true doublet of a particle with
pT > ``model.graph.pt_min`` lie close together and hits of different particles lie at least
``margin`` apart. The candidate doublets of an event are then the pairs of hits whose embeddings
lie within ``radius`` of each other (:func:`radius_pairs`), oriented inner -> outer and, with
``layer_filter``, kept on the pixel layer pairs only (:func:`orient_pairs`).

Neighbour search: scikit-learn's ``NearestNeighbors.kneighbors`` (a k-d tree in these few
dimensions, O(N log N), one thread) for the ``k_max`` nearest hits of every hit, then the radius
cut. A pure radius search (``radius_neighbors``) returns an unbounded number of neighbours where
many hits sit close together (the untrained embedding of a mu = 200 event puts thousands of hits in
one ball); ``k_max`` bounds memory and time, as the k-nearest-neighbour cap of Exa.TrkX does. A
dense ``torch.cdist`` costs N^2 distances (3.4e9 at mu = 200) against ~N k for the tree. A pair is a
candidate when either hit is among the other's ``k_max`` nearest.

Orientation (the convention of :mod:`trackstudy.graphs.doublets` and of the window builder): a pair
on a layer pair (a, b) of :func:`trackstudy.graphs.layers.layer_pairs` points from layer a to
layer b; a pair on one layer, or (without ``layer_filter``) on layers that are no layer pair, points
from the hit nearer the origin (r^2 + z^2) to the farther one.

The radius can be given or, with ``radius: 0``, tuned after the embedding is trained: the
``model.graph.efficiency`` quantile of the embedding distances of the true doublets (pT >
``pt_min``) of the validation events (:func:`tune_radius`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.neighbors import NearestNeighbors

from trackstudy.config import config_from_dict
from trackstudy.errors import ConfigError

__all__ = ["METRIC_METHODS", "MetricConfig", "orient_pairs", "radius_pairs", "sample_negatives", "tune_radius"]

#: Graph construction methods of ``model.graph.method``.
METRIC_METHODS = ("windows", "metric")


@dataclass
class MetricConfig:
    """The ``model.graph.metric`` section (used with ``model.graph.method: metric``).

    Network: emb_dim (embedding dimensions), hidden (MLP width), layers (linear layers).
    Loss: margin (hinge distance of negatives, on the unit sphere: 0..2), pos_weight (weight of the
    positive term). Graph: radius (0: tuned on the validation events for ``model.graph.efficiency``),
    k_max (nearest hits queried per hit), layer_filter (keep pixel layer pairs only, those of
    ``model.graph.skip`` / ``same_layer``). Training (its own budget, before the GNN's): steps,
    max_minutes (0: no limit), lr, batch_events (events per step), n_random (random negative pairs
    per hit), hard_k (nearest hits of a query hit used as hard negatives), hard_queries (query hits
    per event, 0: all).
    """

    emb_dim: int = 8
    hidden: int = 64
    layers: int = 3
    margin: float = 0.1
    pos_weight: float = 1.0
    radius: float = 0.0
    k_max: int = 32
    layer_filter: bool = True
    steps: int = 2000
    max_minutes: float = 3.0
    lr: float = 2e-3
    batch_events: int = 4
    n_random: int = 2
    hard_k: int = 8
    hard_queries: int = 4096

    def __post_init__(self):
        for name in ("emb_dim", "hidden", "layers", "k_max", "steps", "batch_events"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"model.graph.metric.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("radius", "max_minutes", "n_random", "hard_k", "hard_queries", "pos_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.graph.metric.{name}: must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.margin <= 2.0:
            raise ConfigError(f"model.graph.metric.margin: must be in (0, 2] (unit-sphere distances), got {self.margin}")
        if self.radius > 2.0:
            raise ConfigError(f"model.graph.metric.radius: must be <= 2 (unit-sphere distances; 0: tuned), got {self.radius}")
        if self.lr <= 0:
            raise ConfigError(f"model.graph.metric.lr: must be > 0, got {self.lr}")

    @classmethod
    def from_dict(cls, d: dict | None) -> MetricConfig:
        return config_from_dict(cls, d, "model.graph.metric")

    def to_dict(self) -> dict:
        return asdict(self)


def radius_pairs(emb: np.ndarray, radius: float, k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Unordered pairs (i < j) of rows of ``emb`` (N, D) within distance ``radius`` of each other,
    one of them among the other's ``k_max`` nearest; int64 arrays, sorted by (i, j)."""
    emb = np.asarray(emb, np.float64)
    n = len(emb)
    if n < 2 or radius <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = min(int(k_max) + 1, n)  # + 1: the hit itself is usually its own first neighbour
    dist, nbr = NearestNeighbors(n_neighbors=k).fit(emb).kneighbors(emb)
    rows = np.repeat(np.arange(n), k)
    nbr, dist = nbr.reshape(-1), dist.reshape(-1)
    keep = (nbr != rows) & (dist <= radius)
    i, j = np.minimum(rows[keep], nbr[keep]), np.maximum(rows[keep], nbr[keep])
    code = np.unique(i.astype(np.int64) * n + j)
    return code // n, code % n


def orient_pairs(i: np.ndarray, j: np.ndarray, layer: np.ndarray, d2: np.ndarray, pairs: np.ndarray | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Directed doublets (src, dst) from unordered hit pairs (see the module docstring): on a layer
    pair of ``pairs`` (P, 2) from its first to its second layer, otherwise from the smaller ``d2``
    (r^2 + z^2) to the larger. With ``pairs`` given, pairs on no layer pair are dropped (a same-layer
    pair is kept only when (L, L) is in ``pairs``); with None every pair is kept."""
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    li, lj = layer[i], layer[j]
    outward = d2[i] <= d2[j]
    src, dst = np.where(outward, i, j), np.where(outward, j, i)
    if pairs is None:
        return src, dst
    allowed = np.zeros((64, 64), bool)
    allowed[pairs[:, 0], pairs[:, 1]] = True
    fwd, bwd = allowed[li, lj], allowed[lj, li]
    diff = li != lj
    # different layers: the layer pair decides the direction; one layer: d2 (already)
    src = np.where(diff & fwd, i, np.where(diff & bwd, j, src))
    dst = np.where(diff & fwd, j, np.where(diff & bwd, i, dst))
    keep = fwd | bwd
    return src[keep], dst[keep]


def sample_negatives(pid: np.ndarray, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """(M, 2) random hit pairs of different particles (noise, particle_id 0, differs from every
    hit), M <= n_pairs."""
    n = len(pid)
    if n < 2 or n_pairs <= 0:
        return np.zeros((0, 2), np.int64)
    a, b = rng.integers(0, n, n_pairs), rng.integers(0, n, n_pairs)
    keep = (a != b) & ((pid[a] != pid[b]) | (pid[a] == 0))
    return np.stack([a[keep], b[keep]], axis=1).astype(np.int64)


def tune_radius(distances: np.ndarray, efficiency: float) -> float:
    """The radius that keeps a fraction ``efficiency`` of true doublets whose embedding distances
    are ``distances`` (the quantile; a tiny margin above it so the quantile's pair is kept)."""
    d = np.asarray(distances, np.float64).reshape(-1)
    if not len(d):
        raise ConfigError("model.graph.metric.radius: 0 (tune) but the validation events hold no true doublets "
                          "above model.graph.pt_min; give a radius")
    return float(min(np.quantile(d, efficiency) * (1 + 1e-6) + 1e-9, 2.0))
