"""Classical track finding without training: DBSCAN on helix-unrolled hit features.

This is the well-known TrackML Kaggle approach ("unrolling of helices" + DBSCAN): a charged
particle from the beam line moves on a helix; in the transverse plane its hits lie on a circle
through the origin, so a hit at radius r has azimuth phi = phi0 + asin(k r), with curvature
k = q / (2 R) (R = pT / (0.3 B)). For a hypothesised k the hits of every particle with that
curvature share phi0 = phi - asin(k r), and along the helix z grows linearly with the
transverse arc length s = asin(k r) / k, so (z - z0) / s = cot(theta) is shared too. A scan
over k (both charges) and over vertex positions z0 clusters, at each step, the hits in
(cos phi0, sin phi0, w * asinh((z - z0) / s)) with DBSCAN; the steps are merged Kaggle-style:
a hit moves to the new step's cluster when that cluster is better than its current one, so
each track is taken from the step that unrolls it best. "Better" is a cluster quality (the
Kaggle kernels used the size): distinct detector layers, minus penalties for extra hits on a
layer, for the cluster's spread in feature space and for the step's curvature (high pT first),
and never more than ``max_track_hits``. A second pass rescans the hits left once the clusters
crossing >= 4 layers are kept (iterative tracking: the second event is sparser).

The vertex z scan matters on the pixel detector: with the beam spot's sigma_z ~ 50 mm, a
vertex off by dz shifts (z - z0) / s by dz / r, which at r = 32 mm is larger than the
separation between tracks; at mu = 200 the scan needs ~5 mm steps (41 vertices x 41
curvatures), so one mu = 200 pixel event takes a few minutes on one core.

Parameters live in ``params/baselines.yaml`` (section ``dbscan-helix``); see
:class:`HelixDBSCANParams`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from tqdm.auto import tqdm

from trackstudy.config import B_FIELD_T
from trackstudy.data.io import Event
from trackstudy.errors import ConfigError, DataError
from trackstudy.kinematics import C_LIGHT


@dataclass(frozen=True)
class HelixDBSCANParams:
    """Parameters of :func:`dbscan_helix_tracks`.

    eps: DBSCAN radius in feature space (unit circle for the direction; the rapidity-like
      feature is multiplied by ``eta_weight``).
    eps_step: added to eps at each successive scan step (the Kaggle kernels grow eps slowly).
    pt_min: lowest pT (GeV) the curvature scan reaches: |k| <= 0.3 B / (2 pT).
    n_curvature: curvature values scanned, spread uniformly in k over [-k_max, k_max].
    z0_values: vertex z hypotheses (mm) scanned for every curvature (in a parameter file also
      ``z0_range: [first, last, step]``).
    eta_weight: weight of asinh((z - z0) / s) against the azimuth.
    max_track_hits: a cluster with more hits is never adopted (a track cannot have more).
    double_hit_penalty: cluster quality = distinct layers - penalty x extra hits on a layer ...
    spread_scale: ... - spread_scale x RMS spread of the cluster in feature space ...
    curvature_penalty: ... - curvature_penalty x |k| / k_max of the step that found it (prefers
      high-pT hypotheses when low-pT ones find clusters as good).
    n_passes: scans run one after the other; after each but the last, clusters crossing at
      least ``accept_layers`` distinct layers become tracks and only the other hits are rescanned.
    accept_layers: see n_passes.
    min_samples: DBSCAN min_samples (1: every hit is at least its own cluster).
    """

    # defaults = params/baselines.yaml, tuned on simulated mu = 200 pixel events
    eps: float = 0.004
    eps_step: float = 0.0
    pt_min: float = 0.2
    n_curvature: int = 41
    z0_values: tuple = tuple(float(z) for z in np.arange(-100.0, 100.1, 5.0))
    eta_weight: float = 0.4
    max_track_hits: int = 12
    double_hit_penalty: float = 0.0
    spread_scale: float = 300.0
    curvature_penalty: float = 1.2
    n_passes: int = 2
    accept_layers: int = 4
    min_samples: int = 1

    def __post_init__(self):
        if not self.eps > 0:
            raise ConfigError(f"dbscan-helix eps={self.eps!r}: must be > 0")
        if not self.pt_min > 0:
            raise ConfigError(f"dbscan-helix pt_min={self.pt_min!r}: must be > 0 GeV")
        if int(self.n_curvature) != self.n_curvature or self.n_curvature < 1:
            raise ConfigError(f"dbscan-helix n_curvature={self.n_curvature!r}: must be an integer >= 1")
        if not self.eta_weight > 0:
            raise ConfigError(f"dbscan-helix eta_weight={self.eta_weight!r}: must be > 0")
        if int(self.max_track_hits) != self.max_track_hits or self.max_track_hits < 2:
            raise ConfigError(f"dbscan-helix max_track_hits={self.max_track_hits!r}: must be an integer >= 2")
        if int(self.n_passes) != self.n_passes or self.n_passes < 1:
            raise ConfigError(f"dbscan-helix n_passes={self.n_passes!r}: must be an integer >= 1")
        if int(self.accept_layers) != self.accept_layers or self.accept_layers < 1:
            raise ConfigError(f"dbscan-helix accept_layers={self.accept_layers!r}: must be an integer >= 1")
        if int(self.min_samples) != self.min_samples or self.min_samples < 1:
            raise ConfigError(f"dbscan-helix min_samples={self.min_samples!r}: must be an integer >= 1")
        z0 = tuple(float(z) for z in np.atleast_1d(self.z0_values))
        if not z0 or not all(np.isfinite(z0)):
            raise ConfigError(f"dbscan-helix z0_values={self.z0_values!r}: need at least one finite value (mm)")
        object.__setattr__(self, "z0_values", z0)

    @classmethod
    def from_dict(cls, d: dict | None) -> HelixDBSCANParams:
        d = dict(d or {})
        if "z0_range" in d:
            if "z0_values" in d:
                raise ConfigError("dbscan-helix: give z0_values or z0_range, not both")
            rng = d.pop("z0_range")
            try:
                first, last, step = (float(v) for v in rng)
            except (TypeError, ValueError):
                raise ConfigError(f"dbscan-helix z0_range={rng!r}: expected [first, last, step] in mm") from None
            if not step > 0 or last < first:
                raise ConfigError(f"dbscan-helix z0_range={rng!r}: need step > 0 and last >= first")
            d["z0_values"] = tuple(np.arange(first, last + step / 2, step))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"dbscan-helix: unknown parameter(s) {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        return cls(**d)

    def curvatures(self, b_field: float = B_FIELD_T) -> np.ndarray:
        """The scanned curvatures k (1/mm), ordered from straight (k = 0) outward, alternating sign."""
        k_max = C_LIGHT * b_field / (2.0 * self.pt_min * 1000.0)
        ks = np.linspace(-k_max, k_max, int(self.n_curvature)) if self.n_curvature > 1 else np.zeros(1)
        return ks[np.argsort(np.abs(ks), kind="stable")]


def unrolled_features(x, y, z, k: float, z0: float, eta_weight: float) -> np.ndarray:
    """Features of hits under one helix hypothesis (curvature k in 1/mm, vertex z0 in mm): shape (N, 3).

    (cos phi0, sin phi0, eta_weight * asinh((z - z0) / s)) with phi0 = phi - asin(k r) and
    s = asin(k r) / k the transverse arc length (s = r for k = 0). Hits beyond the reach of the
    hypothesis (|k r| > 1) use asin(+-1).
    """
    r = np.hypot(x, y)
    kr = np.clip(k * r, -1.0, 1.0)
    turn = np.arcsin(kr)
    phi0 = np.arctan2(y, x) - turn
    s = turn / k if k != 0 else r
    s = np.where(np.abs(s) > 1e-9, s, 1e-9)
    out = np.empty((len(r), 3))
    out[:, 0] = np.cos(phi0)
    out[:, 1] = np.sin(phi0)
    out[:, 2] = eta_weight * np.arcsinh((z - z0) / s)
    return out


def dbscan_labels(features: np.ndarray, eps: float, min_samples: int = 1) -> np.ndarray:
    """DBSCAN cluster labels of ``features`` (N, d) (Euclidean; -1 = noise, only when min_samples > 1).

    With min_samples = 1 every point is a core point and DBSCAN's clusters are exactly the
    connected components of the graph joining points at distance <= eps; that case (the one the
    scan uses, ~200 times per event) is computed with scipy's cKDTree pair search and
    csgraph components, ~8x faster than sklearn's DBSCAN on a 78k-hit event with the same
    labels up to renumbering (tests/test_baselines.py checks this). Other min_samples use sklearn.
    """
    n = len(features)
    if min_samples > 1:
        from sklearn.cluster import DBSCAN  # only needed here; keeps the CLI quick to start

        return DBSCAN(eps=eps, min_samples=min_samples, algorithm="kd_tree").fit(features).labels_.astype(np.int64)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = cKDTree(features).query_pairs(eps, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs), dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def _dense(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inverse, counts) of labels; labels already 0..n-1 without gaps skip the sort."""
    counts = np.bincount(labels)
    if counts.all():
        return labels, counts
    _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return inv, counts


def cluster_quality(labels: np.ndarray, layer: np.ndarray, max_hits: int, double_hit_penalty: float) -> np.ndarray:
    """Quality of each hit's cluster, shape (N,): distinct layers - ``double_hit_penalty`` x
    (hits - distinct layers); -inf over ``max_hits``. A track crosses each layer about once
    (overlapping modules give a few double hits); two tracks merged double up on every layer.
    labels >= 0; layer: dense layer index 0..L-1 per hit."""
    inv, n_hits = _dense(labels)
    n_layer_ids = int(layer.max()) + 1
    key = inv.astype(np.int64) * n_layer_ids + layer
    if len(n_hits) * n_layer_ids <= 50_000_000:
        # distinct (cluster, layer) pairs by counting into a (clusters x layers) table: no sort needed
        table = np.bincount(key, minlength=len(n_hits) * n_layer_ids)
        n_layers = (table.reshape(len(n_hits), n_layer_ids) > 0).sum(axis=1)
    else:  # many layer ids (e.g. none given: one per hit): sort the pairs instead
        n_layers = np.bincount(np.unique(key) // n_layer_ids, minlength=len(n_hits))
    q = (n_layers - double_hit_penalty * (n_hits - n_layers)).astype(np.float64)
    q = np.where(n_hits > max_hits, -np.inf, q)
    return q[inv]


def cluster_spread(labels: np.ndarray, features: np.ndarray) -> np.ndarray:
    """RMS distance of each hit's cluster from the cluster's mean in feature space, shape (N,):
    a track unrolled by the right hypothesis is tighter than a chain of unrelated hits."""
    inv, n = _dense(labels)
    var = np.zeros(len(n))
    for j in range(features.shape[1]):
        f = features[:, j]
        mean = np.bincount(inv, weights=f, minlength=len(n)) / n
        var += np.bincount(inv, weights=(f - mean[inv]) ** 2, minlength=len(n)) / n
    return np.sqrt(var)[inv]


def merge_step(labels: np.ndarray, new: np.ndarray, layer: np.ndarray, max_hits: int,
               double_hit_penalty: float = 0.5, penalty_cur: np.ndarray | None = None,
               penalty_new: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Kaggle-style merge of one scan step: each hit moves to its new cluster when that cluster's
    quality beats its current cluster's. Quality = :func:`cluster_quality` minus a per-hit
    penalty (the spread term, fixed when the hit joined its cluster; 0 when not given).
    Labels are >= 0. Returns (labels, per-hit penalty)."""
    n = len(labels)
    penalty_cur = np.zeros(n) if penalty_cur is None else penalty_cur
    penalty_new = np.zeros(n) if penalty_new is None else penalty_new
    q_cur = cluster_quality(labels, layer, max_hits, double_hit_penalty) - penalty_cur
    q_new = cluster_quality(new, layer, max_hits, double_hit_penalty) - penalty_new
    adopt = q_new > q_cur
    out = labels.copy()
    out[adopt] = labels.max() + 1 + new[adopt]
    pen = penalty_cur.copy()
    pen[adopt] = penalty_new[adopt]
    return out, pen


def _scan(x, y, z, layer, params: HelixDBSCANParams, progress: bool, desc: str) -> np.ndarray:
    """One scan over (k, z0) with the quality merge; returns a cluster label per hit."""
    labels = np.arange(len(x), dtype=np.int64)  # start: every hit alone
    if len(x) == 0:
        return labels
    penalty = np.zeros(len(x))
    ks = params.curvatures()
    k_max = max(float(np.abs(ks).max()), 1e-300)
    steps = [(k, z0) for k in ks for z0 in params.z0_values]
    for i, (k, z0) in enumerate(tqdm(steps, desc=desc, disable=not progress)):
        feats = unrolled_features(x, y, z, k, z0, params.eta_weight)
        eps = params.eps + i * params.eps_step
        new = dbscan_labels(feats, eps, params.min_samples)
        noise = new < 0  # only with min_samples > 1: such hits stay as they are
        if noise.any():
            new[noise] = new.max() + 1 + np.arange(noise.sum())
        pen_new = np.full(len(x), params.curvature_penalty * abs(k) / k_max)
        if params.spread_scale > 0:
            pen_new += params.spread_scale * cluster_spread(new, feats)
        labels, penalty = merge_step(labels, new, layer, params.max_track_hits, params.double_hit_penalty,
                                     penalty, pen_new)
        labels = _dense(labels)[0]  # keep labels small and gap-free
    return labels


def dbscan_helix_tracks(event: Event, params: HelixDBSCANParams | dict | None = None, *,
                        progress: bool = False) -> pd.DataFrame:
    """Tracks of one event (hits only) by DBSCAN over helix-unrolled features; returns
    ``hit_id, track_id`` (every hit gets a track id >= 0; unclustered hits are one-hit tracks)."""
    if not isinstance(params, HelixDBSCANParams):
        params = HelixDBSCANParams.from_dict(params)
    hits = event.hits
    for col in ("hit_id", "x", "y", "z"):
        if col not in hits.columns:
            raise DataError(f"event {event.event_id}: hits have no column {col}")
    x = hits["x"].to_numpy(np.float64)
    y = hits["y"].to_numpy(np.float64)
    z = hits["z"].to_numpy(np.float64)
    if {"volume_id", "layer_id"} <= set(hits.columns):
        layer = hits["volume_id"].to_numpy(np.int64) * 100 + hits["layer_id"].to_numpy(np.int64)
        _, layer = np.unique(layer, return_inverse=True)
    else:  # no layer ids: every hit its own layer, quality = hits
        layer = np.arange(len(hits), dtype=np.int64)
    track = np.full(len(hits), -1, dtype=np.int64)
    if len(hits) == 0:
        return pd.DataFrame({"hit_id": np.zeros(0, dtype=np.int64), "track_id": track})
    active = np.arange(len(hits))
    n_tracks = 0
    for p in range(int(params.n_passes)):
        labels = _scan(x[active], y[active], z[active], layer[active], params, progress, f"dbscan-helix {p + 1}")
        inv, _ = _dense(labels)
        if p < params.n_passes - 1:
            # freeze clusters crossing enough distinct layers; the rest of the hits go to the next pass
            n_layers = cluster_quality(inv, layer[active], len(active) + 1, 0.0)  # = distinct layers
            keep = n_layers >= params.accept_layers
        else:
            keep = np.ones(len(active), dtype=bool)
        kept_inv = _dense(inv[keep])[0] if keep.any() else inv[keep]
        track[active[keep]] = n_tracks + kept_inv
        n_tracks += int(kept_inv.max()) + 1 if keep.any() else 0
        active = active[~keep]
        if len(active) == 0:
            break
    return pd.DataFrame({"hit_id": hits["hit_id"].to_numpy(np.int64), "track_id": track})
