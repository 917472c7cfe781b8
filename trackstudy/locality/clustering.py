"""Clustering of projected hits into locality clusters (the attention neighbourhoods).

Four methods, all working on the projected coordinates of
:mod:`trackstudy.locality.projection` (mm), each surface clustered on its own:

``dbscan``   scikit-learn DBSCAN, as in the FlexAttention paper, with an optional size cap
             (clusters above ``max_size`` hits are re-clustered with a smaller eps).
``window``   iterative windowing: a rectangular window is seeded on the densest free hit,
             re-centred on the mean of the free hits it holds a few times, and its hits
             become one cluster; repeated until every hit is taken.
``density``  density peaks (Rodriguez & Laio, Science 344 (2014) 1492): every hit points to
             its nearest denser hit within ``delta_min``; hits with none are cluster centres.
``grid``     grid window: fixed rectangular cells, one cluster per occupied cell.

scikit-learn implements only DBSCAN (and HDBSCAN/OPTICS/MeanShift, whose cost or
parameters do not match the three lighter methods of the seed slides' comparison), so the
other three are written here, vectorised with numpy and scipy's KD-tree.

**Label convention** (the attention masks rely on it). :func:`cluster` returns an int64
array with one label per hit, in input order, such that

* every label is >= 0 and labels are consecutive (0 .. n_clusters - 1);
* clusters never span two surfaces: the barrel is clustered first, then the z<0 endcap
  plane, then the z>0 plane, each offset past the previous labels, so labels are unique
  across regions and sorted by surface;
* hits a method leaves unclustered (DBSCAN noise, a density-peaks hit of too low density)
  each become their own singleton cluster, so every hit belongs to exactly one cluster and
  may attend at least to itself.

**phi wrap-around**: on the barrel cylinder ``u = R*phi`` is periodic with period
``2*pi*R``. DBSCAN runs on the points plus copies of a strip of width ``2*eps`` on each
side of the seam, and the labels of each hit and its copies are merged (exact for DBSCAN:
every hit near the seam sees its whole periodic neighbourhood). The window and density
methods use a periodic KD-tree; the grid tiles the circumference with a whole number of
cells (its default offset puts the seam in the middle of a cell).

Parameters: each method has a parameter dataclass (its field defaults are the barrel
defaults) and separate documented defaults for the barrel and the endcaps (:data:`METHODS`).
In :func:`cluster`, ``eps=3`` sets a parameter for both regions and ``barrel_eps=3`` /
``endcap_eps=1`` for one. Every method has ``v_scale``, a factor applied to the second
coordinate (z on the barrel, y on the planes) before clustering: on the barrel, tracks are
longer in z (vertex spread) than in R*phi (bending), so ``v_scale < 1`` makes them round.

Vertex-z refinement (``cluster(..., vertex_scan=...)``, :func:`refine_vertex_z`): each cluster
is reprojected from the candidate vertex z that makes it most compact, and the surface is
clustered again. The seed papers do this for the endcaps (``vertex_scan=True``); on the barrel
(``"barrel"`` / ``"all"``) it joins the fragments of tracks from vertices far from z = 0.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from trackstudy.errors import ConfigError
from trackstudy.locality.projection import (
    BARREL,
    ENDCAP_NEG,
    ENDCAP_POS,
    Projection,
    Surfaces,
    endcap_spread,
    project,
    project_to_cylinder,
    project_to_plane,
)

# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class DBSCANParams:
    """DBSCAN (scikit-learn). eps: neighbourhood radius (mm); min_samples: hits (itself included)
    within eps for a core hit; v_scale: factor on the second coordinate; algorithm, n_jobs: passed
    to sklearn (n_jobs=-1 uses all cores); max_size: clusters with more hits are clustered again
    with eps multiplied by ``shrink`` (repeatedly, at most 8 times) until they fit (0 = no cap).
    DBSCAN chains dense regions into huge clusters once eps nears the percolation threshold, and
    a few of those dominate the attention cost; the cap splits only them."""

    eps: float = 3.5
    min_samples: int = 2
    v_scale: float = 0.2
    max_size: int = 1024
    shrink: float = 0.8
    algorithm: str = "kd_tree"
    n_jobs: int | None = None

    def check(self) -> None:
        _positive(self, "eps", "v_scale")
        _at_least(self, "min_samples", 1)
        _at_least(self, "max_size", 0)
        if not (0.0 < self.shrink < 1.0):
            raise ConfigError(f"dbscan parameter shrink={self.shrink!r}: must be in (0, 1)")
        if self.algorithm not in ("kd_tree", "ball_tree", "brute", "auto"):
            raise ConfigError(f"dbscan parameter algorithm={self.algorithm!r}: "
                              "expected kd_tree, ball_tree, brute or auto")

    @property
    def reach(self) -> float:
        return self.eps


@dataclass(frozen=True)
class WindowParams:
    """Iterative windowing. width_u, width_v: full window size (mm) along u (R*phi or x) and along
    the scaled v; n_iter: re-centring steps on the mean of the window's free hits; v_scale: factor
    on the second coordinate."""

    width_u: float = 18.0
    width_v: float = 240.0
    n_iter: int = 2
    v_scale: float = 1.0

    def check(self) -> None:
        _positive(self, "width_u", "width_v", "v_scale")
        _at_least(self, "n_iter", 0)

    @property
    def reach(self) -> float:
        return max(self.width_u, self.width_v)


@dataclass(frozen=True)
class DensityParams:
    """Density peaks. dc: density radius (mm), a hit's density is the number of hits within dc;
    delta_min: a hit with no denser hit within delta_min (mm) is a cluster centre; min_density:
    centres with fewer hits within dc become singletons; k: neighbours searched at first
    (raised automatically where needed); v_scale: factor on the second coordinate."""

    dc: float = 3.0
    delta_min: float = 12.0
    min_density: int = 2
    k: int = 16
    v_scale: float = 0.2

    def check(self) -> None:
        _positive(self, "dc", "delta_min", "v_scale")
        _at_least(self, "min_density", 1)
        _at_least(self, "k", 2)

    @property
    def reach(self) -> float:
        return max(self.dc, self.delta_min)


@dataclass(frozen=True)
class GridParams:
    """Grid window. cell_u, cell_v: cell size (mm) along u and the scaled v (on the barrel the
    circumference is divided into a whole number of cells, so the actual width is the nearest
    divisor); offset_u, offset_v: grid shift as a fraction of a cell (0.5 puts the phi = +-pi seam
    mid-cell); v_scale: factor on the second coordinate."""

    cell_u: float = 16.0
    cell_v: float = 160.0
    offset_u: float = 0.5
    offset_v: float = 0.0
    v_scale: float = 1.0

    def check(self) -> None:
        _positive(self, "cell_u", "cell_v", "v_scale")
        for name in ("offset_u", "offset_v"):
            value = getattr(self, name)
            if not (0.0 <= value < 1.0):
                raise ConfigError(f"grid parameter {name}={value!r}: must be in [0, 1) (a fraction of a cell)")

    @property
    def reach(self) -> float:
        return 0.0


def _positive(params, *names: str) -> None:
    for name in names:
        value = getattr(params, name)
        if not (np.isfinite(value) and value > 0):
            raise ConfigError(f"{_method_of(params)} parameter {name}={value!r}: must be a positive number")


def _at_least(params, name: str, low: int) -> None:
    value = getattr(params, name)
    if value < low:
        raise ConfigError(f"{_method_of(params)} parameter {name}={value!r}: must be an integer >= {low}")


def _method_of(params) -> str:
    for name, m in METHODS.items():
        if isinstance(params, m.params_cls):
            return name
    return type(params).__name__


# --------------------------------------------------------------------------- helpers


def _singletons_for_noise(labels: np.ndarray) -> np.ndarray:
    """Consecutive labels 0..k-1 with each negative (noise) label turned into its own cluster."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    noise = labels < 0
    if noise.any():
        top = labels.max(initial=-1) + 1
        labels[noise] = top + np.arange(noise.sum())
    _, inv = np.unique(labels, return_inverse=True)
    return inv.astype(np.int64).ravel()


def _first_seen_order(labels: np.ndarray) -> np.ndarray:
    """Relabel consecutive labels in order of first appearance (deterministic, input-order based)."""
    if len(labels) == 0:
        return labels.astype(np.int64)
    _, first = np.unique(labels, return_index=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[labels]


def _wrap_u(u: np.ndarray, period: float) -> np.ndarray:
    """u shifted into [0, period) for a periodic KD-tree."""
    w = np.mod(u + period / 2, period)
    w[w >= period] = 0.0  # np.mod can round up to period itself
    return w


def _tree(points: np.ndarray, period: float | None, reach: float) -> tuple[cKDTree, np.ndarray]:
    """KD-tree over (u, v) with u periodic when ``period`` is given; returns the tree and its data.

    v gets a box larger than its span plus twice ``reach`` so it never wraps within a query of
    radius <= reach (KDTree's boxsize makes every dimension toroidal).
    """
    if period is None:
        return cKDTree(points), points
    v = points[:, 1]
    v0 = v.min() if len(v) else 0.0
    span = (v.max() - v0) if len(v) else 0.0
    data = np.column_stack([_wrap_u(points[:, 0], period), v - v0])
    return cKDTree(data, boxsize=[period, span + 2 * reach + 1.0]), data


def _merge_labels(n: int, ext_labels: np.ndarray, copy_of: np.ndarray) -> np.ndarray:
    """Labels of the n original points after merging each copy's cluster with its original's."""
    k = ext_labels.max(initial=-1) + 1
    a = ext_labels[copy_of]
    b = ext_labels[n:]
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(k, k))
    _, comp = connected_components(graph, directed=False)
    return comp[ext_labels[:n]].astype(np.int64)


# --------------------------------------------------------------------------- methods


def dbscan_labels(points: np.ndarray, params: DBSCANParams, period: float | None = None,
                  _depth: int = 0) -> np.ndarray:
    """DBSCAN on (n, 2) points (mm); u periodic with ``period`` when given. Noise -> singletons.

    With ``params.max_size > 0``, clusters above it are re-clustered with a smaller eps.
    """
    labels = _dbscan_once(points, params, period)
    if params.max_size <= 0 or _depth >= 8 or len(labels) <= params.max_size:
        return labels
    sizes = np.bincount(labels)
    big = np.flatnonzero(sizes > params.max_size)
    if len(big) == 0:
        return labels
    labels = labels.copy()
    smaller = dataclasses.replace(params, eps=params.eps * params.shrink)
    top = int(labels.max()) + 1
    for c in big:
        idx = np.flatnonzero(labels == c)
        sub = dbscan_labels(points[idx], smaller, period, _depth + 1)
        labels[idx] = top + sub
        top += int(sub.max()) + 1
    return _singletons_for_noise(labels)


def _dbscan_once(points: np.ndarray, params: DBSCANParams, period: float | None) -> np.ndarray:
    from sklearn.cluster import DBSCAN

    n = len(points)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    model = DBSCAN(eps=params.eps, min_samples=params.min_samples, algorithm=params.algorithm,
                   n_jobs=params.n_jobs)
    if period is None:
        return _singletons_for_noise(model.fit_predict(points))
    # periodic: copy a strip of width 2*eps from each side of the seam to the other side
    strip = min(2 * params.eps, period)
    u = points[:, 0]
    low = np.flatnonzero(u < -period / 2 + strip)
    high = np.flatnonzero(u > period / 2 - strip)
    copies = np.concatenate([points[low] + [period, 0.0], points[high] - [period, 0.0]])
    copy_of = np.concatenate([low, high])
    ext = _singletons_for_noise(model.fit_predict(np.concatenate([points, copies])))
    return _singletons_for_noise(_merge_labels(n, ext, copy_of))


def window_labels(points: np.ndarray, params: WindowParams, period: float | None = None) -> np.ndarray:
    """Iterative windowing on (n, 2) points (mm); u periodic with ``period`` when given.

    Seeds are taken in order of decreasing window occupancy; each window is re-centred
    ``n_iter`` times on the mean of the still-free hits inside it, then those hits (and the
    seed) form a cluster.
    """
    n = len(points)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    half = np.array([params.width_u / 2, params.width_v / 2])
    scaled = points / half  # the window becomes the unit ball of the max-norm
    p = None if period is None else period / half[0]
    tree, data = _tree(scaled, p, 1.0)
    occupancy = tree.query_ball_point(data, r=1.0, p=np.inf, return_length=True)
    order = np.lexsort((np.arange(n), -occupancy))
    labels = np.full(n, -1, dtype=np.int64)
    k = 0
    for seed in order:
        if labels[seed] >= 0:
            continue
        centre = data[seed].copy()
        members = np.array([seed])
        for it in range(params.n_iter + 1):
            cand = np.asarray(tree.query_ball_point(centre, r=1.0, p=np.inf), dtype=np.int64)
            cand = cand[labels[cand] < 0]
            if len(cand) == 0:
                break
            members = cand
            if it == params.n_iter:
                break
            offset = data[cand] - centre
            if p is not None:  # mean of periodic offsets, taken relative to the centre
                offset[:, 0] = (offset[:, 0] + p / 2) % p - p / 2
            new = centre + offset.mean(axis=0)
            if p is not None:
                new[0] %= p
            centre = new
        labels[members] = k
        labels[seed] = k
        k += 1
    return _first_seen_order(labels)


def density_labels(points: np.ndarray, params: DensityParams, period: float | None = None) -> np.ndarray:
    """Density peaks on (n, 2) points (mm); u periodic with ``period`` when given.

    density = hits within dc; each hit links to its nearest strictly denser hit (ties broken by
    input order) within delta_min; hits without such a link are centres (singletons when their
    density is below min_density); every other hit takes its centre's label.
    """
    n = len(points)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    tree, data = _tree(points, period, params.reach)
    density = tree.query_ball_point(data, r=params.dc, return_length=True)
    # rank 0 = densest; ties by input order, so "denser" is a strict total order
    order = np.lexsort((np.arange(n), -density))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    parent = np.arange(n)
    todo = np.arange(n)
    k = min(params.k, n)
    while len(todo):
        dist, nb = tree.query(data[todo], k=k, distance_upper_bound=params.delta_min)
        dist, nb = dist.reshape(len(todo), -1), nb.reshape(len(todo), -1)
        found = np.isfinite(dist)
        nbc = np.where(found, nb, 0)
        denser = found & (rank[nbc] < rank[todo][:, None])
        has = denser.any(axis=1)
        first = np.argmax(denser, axis=1)  # neighbours come sorted by distance
        parent[todo[has]] = nbc[has, first[has]]
        # all k neighbours found, none denser: a denser hit may lie further out within delta_min
        full = ~has & found[:, -1]
        if k >= n or not full.any():
            break
        todo = todo[full]
        k = min(2 * k, n)
    # hits of too low density that head their own tree: isolate them, not their followers
    roots = parent == np.arange(n)
    # follow links to the root (pointer jumping, log depth)
    while True:
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    labels = parent.copy()
    weak_root = roots & (density < params.min_density)
    if weak_root.any():
        # a weak centre and its followers are all low-density outskirts: each becomes a singleton
        weak_member = weak_root[labels]
        labels[weak_member] = -1
    return _first_seen_order(_singletons_for_noise(labels))


def grid_labels(points: np.ndarray, params: GridParams, period: float | None = None) -> np.ndarray:
    """Grid window on (n, 2) points (mm): one cluster per occupied cell; u periodic when ``period`` is given."""
    n = len(points)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    u, v = points[:, 0], points[:, 1]
    if period is None:
        cu = np.floor(u / params.cell_u - params.offset_u).astype(np.int64)
    else:
        n_cells = max(1, int(round(period / params.cell_u)))
        width = period / n_cells
        cu = np.floor((u + period / 2) / width - params.offset_u).astype(np.int64) % n_cells
    cv = np.floor(v / params.cell_v - params.offset_v).astype(np.int64)
    # one int64 key per cell: np.unique on it is ~10x faster than on (cu, cv) rows (axis=0)
    cu = cu - cu.min()
    cv = cv - cv.min()
    _, labels = np.unique(cu * (int(cv.max()) + 1) + cv, return_inverse=True)
    return _first_seen_order(labels.astype(np.int64).ravel())


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Method:
    """A clustering method: its parameter class, per-region defaults and the function
    ``func(points (n, 2), params, period | None) -> labels``."""

    name: str
    params_cls: type
    func: Callable[[np.ndarray, object, float | None], np.ndarray]
    barrel: object
    endcap: object
    summary: str


#: Per-region defaults were tuned with :func:`trackstudy.locality.scan.scan` on two simulated
#: mu = 200 pixel events (seed 11): a high reconstructible ratio with attention reduction well
#: below 0.01 per region (margin for event-to-event spread). Check them on your data with a scan.
METHODS: dict[str, Method] = {
    "dbscan": Method("dbscan", DBSCANParams, dbscan_labels,
                     barrel=DBSCANParams(eps=3.5, min_samples=2, v_scale=0.2, max_size=1024),
                     endcap=DBSCANParams(eps=3.0, min_samples=3, v_scale=1.0, max_size=384),
                     summary="scikit-learn DBSCAN (the FlexAttention paper)"),
    "window": Method("window", WindowParams, window_labels,
                     barrel=WindowParams(width_u=18.0, width_v=240.0, n_iter=2),
                     endcap=WindowParams(width_u=12.0, width_v=16.0, n_iter=2),
                     summary="iterative windowing"),
    "density": Method("density", DensityParams, density_labels,
                      barrel=DensityParams(dc=3.0, delta_min=12.0, min_density=2, v_scale=0.2),
                      endcap=DensityParams(dc=1.0, delta_min=2.0, min_density=2, v_scale=1.0),
                      summary="density peaks (Rodriguez & Laio 2014)"),
    "grid": Method("grid", GridParams, grid_labels,
                   barrel=GridParams(cell_u=16.0, cell_v=160.0),
                   endcap=GridParams(cell_u=16.0, cell_v=16.0),
                   summary="grid window (fixed cells)"),
}


def get_method(method: str) -> Method:
    if method not in METHODS:
        raise ConfigError(f"unknown clustering method {method!r}; expected one of {', '.join(METHODS)}")
    return METHODS[method]


def _coerce(cls, name: str, value, method: str):
    types = {f.name: f.type for f in fields(cls)}
    kind = str(types[name])
    if isinstance(value, str):
        text = value.strip()
        try:
            if kind.startswith("int"):
                if text.lower() in ("none", "null") and "None" in kind:
                    return None
                return int(text)
            if kind.startswith("float"):
                return float(text)
        except ValueError:
            raise ConfigError(f"{method} parameter {name}={value!r}: expected "
                              f"{'an integer' if kind.startswith('int') else 'a number'}") from None
        return text
    if kind.startswith("int"):
        if value is None and "None" in kind:
            return None
        if isinstance(value, bool) or not float(value).is_integer():
            raise ConfigError(f"{method} parameter {name}={value!r}: expected an integer")
        return int(value)
    if kind.startswith("float"):
        if isinstance(value, bool):
            raise ConfigError(f"{method} parameter {name}={value!r}: expected a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{method} parameter {name}={value!r}: expected a number") from None
    return value


def resolve_params(method: str, params: dict | None = None) -> tuple[object, object]:
    """(barrel_params, endcap_params) for ``method`` from the region defaults and overrides.

    ``params`` keys: a field name (both regions) or ``barrel_<field>`` / ``endcap_<field>``;
    values may be strings (from the command line). Unknown names raise ConfigError.
    """
    m = get_method(method)
    names = [f.name for f in fields(m.params_cls)]
    both: dict = {}
    per = {"barrel": {}, "endcap": {}}
    for key, value in (params or {}).items():
        region, _, name = key.partition("_") if key.startswith(("barrel_", "endcap_")) else (None, "", key)
        if name not in names:
            raise ConfigError(f"unknown {method} parameter {key!r}; expected one of {', '.join(names)} "
                              f"(optionally prefixed barrel_ or endcap_)")
        value = _coerce(m.params_cls, name, value, method)
        (per[region] if region else both)[name] = value
    out = []
    for region in ("barrel", "endcap"):
        p = dataclasses.replace(getattr(m, region), **{**both, **per[region]})
        p.check()
        out.append(p)
    return out[0], out[1]


def cluster_points(points: np.ndarray, method: str = "dbscan", params=None, period: float | None = None) -> np.ndarray:
    """Cluster one surface's (n, 2) points (mm) with ``method``; u periodic when ``period`` is given.

    ``params``: the method's parameter dataclass (default: its barrel defaults when periodic,
    else its endcap defaults). Returns consecutive labels >= 0 (noise as singletons).
    """
    m = get_method(method)
    if params is None:
        params = m.barrel if period is not None else m.endcap
    if not isinstance(params, m.params_cls):
        raise ConfigError(f"{method}: params must be a {m.params_cls.__name__}, got {type(params).__name__}")
    params.check()
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if params.v_scale != 1.0:
        pts = pts * [1.0, params.v_scale]
    return m.func(pts, params, period)


def _cluster_surfaces(proj: Projection, method: str, barrel, endcap) -> np.ndarray:
    labels = np.empty(len(proj), dtype=np.int64)
    offset = 0
    for surface in (BARREL, ENDCAP_NEG, ENDCAP_POS):
        idx, pts = proj.points(surface)
        if len(idx) == 0:
            continue
        if surface == BARREL:
            lab = cluster_points(pts, method, barrel, period=proj.period)
        else:
            lab = cluster_points(pts, method, endcap, period=None)
        labels[idx] = lab + offset
        offset += int(lab.max()) + 1
    return labels


def default_z_candidates(z_max: float = 150.0, step: float = 2.5) -> np.ndarray:
    """Vertex z candidates (mm) for the endcap scan: -z_max .. z_max in steps of ``step``."""
    n = int(round(2 * z_max / step)) + 1
    return np.linspace(-z_max, z_max, n)


def _best_candidate(spread: np.ndarray, zc: np.ndarray) -> float | None:
    if not np.isfinite(spread).any():
        return None
    best = np.flatnonzero(spread == spread.min())
    return float(zc[best[np.argmin(np.abs(zc[best]))]])


def _groups(idx: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    lab = labels[idx]
    order = np.argsort(lab, kind="stable")
    return np.split(idx[order], np.flatnonzero(np.diff(lab[order])) + 1) if len(idx) else []


def refine_vertex_z(proj: Projection, labels: np.ndarray, method: str, barrel_params, endcap_params, *,
                    regions=("endcap",), z_candidates=None, min_size: int = 3,
                    min_size_barrel: int = 2) -> tuple[np.ndarray, Projection]:
    """Refinement by the vertex-z scan: reproject each cluster from its most compact vertex z, re-cluster.

    For every cluster of the given ``regions`` ("endcap", "barrel") with at least ``min_size``
    hits (``min_size_barrel`` on the barrel), the candidate vertex z (``z_candidates``, mm)
    that makes its hits most compact is found: the RMS spread on the plane for endcaps
    (:func:`~trackstudy.locality.projection.endcap_spread`), the spread of z on the cylinder
    for the barrel. Its hits are reprojected from that z, staying on their surface, and each
    refined surface is clustered again with the same method and parameters: fragments of one
    track that pointed to a displaced vertex now land together. Returns
    ``(labels, refined_projection)``; the label convention of :func:`cluster` holds.
    """
    regions = tuple(regions)
    bad = [r for r in regions if r not in ("barrel", "endcap")]
    if bad:
        raise ConfigError(f"vertex-z refinement regions {bad}: expected 'barrel' and/or 'endcap'")
    zc = default_z_candidates() if z_candidates is None else np.asarray(z_candidates, dtype=np.float64).ravel()
    if len(zc) == 0 or not np.all(np.abs(zc) < proj.surfaces.z_plane):
        raise ConfigError(f"vertex-z candidates must be non-empty with |z0| < {proj.surfaces.z_plane} mm")
    R, Z = proj.surfaces.radius, proj.surfaces.z_plane
    z0 = proj.z0.copy()
    u, v = proj.u.copy(), proj.v.copy()
    if "barrel" in regions:
        bar = np.flatnonzero(proj.surface == BARREL)
        for group in _groups(bar, labels):
            if len(group) < min_size_barrel:
                continue
            scale = R / np.hypot(proj.x[group], proj.y[group])
            zcyl = zc[:, None] + (proj.z[group][None, :] - zc[:, None]) * scale[None, :]  # (k, m)
            best = _best_candidate(zcyl.std(axis=1), zc)
            if best is not None:
                z0[group] = best
        if len(bar):
            u[bar], v[bar] = project_to_cylinder(proj.x[bar], proj.y[bar], proj.z[bar], R, z0[bar])
    if "endcap" in regions:
        end = np.flatnonzero(proj.surface != BARREL)
        for group in _groups(end, labels):
            if len(group) < min_size:
                continue
            plane = Z * (1.0 if proj.surface[group[0]] == ENDCAP_POS else -1.0)
            best = _best_candidate(endcap_spread(proj.x[group], proj.y[group], proj.z[group], plane, zc), zc)
            if best is not None:
                z0[group] = best
        if len(end):
            sign = np.where(proj.surface[end] == ENDCAP_POS, 1.0, -1.0)
            u[end], v[end] = project_to_plane(proj.x[end], proj.y[end], proj.z[end], sign * Z, z0[end])
    refined = dataclasses.replace(proj, u=u, v=v, z0=z0)
    barrel_labels = labels[proj.surface == BARREL]
    if "barrel" in regions:
        out = _cluster_surfaces(refined, method, barrel_params, endcap_params) if "endcap" in regions else None
        if out is None:  # barrel re-clustered, endcap labels kept (shifted past the new barrel labels)
            out = labels.copy()
            idx, pts = refined.points(BARREL)
            nb = 0
            if len(idx):
                lab = cluster_points(pts, method, barrel_params, period=refined.period)
                out[idx] = lab
                nb = int(lab.max()) + 1
            end = proj.surface != BARREL
            if end.any():
                old = labels[end]
                out[end] = old - old.min() + nb
        return out, refined
    out = labels.copy()
    offset = int(barrel_labels.max()) + 1 if len(barrel_labels) else 0
    for surface in (ENDCAP_NEG, ENDCAP_POS):
        idx, pts = refined.points(surface)
        if len(idx) == 0:
            continue
        lab = cluster_points(pts, method, endcap_params, period=None)
        out[idx] = lab + offset
        offset += int(lab.max()) + 1
    return out, refined


def refine_endcaps(proj: Projection, labels: np.ndarray, method: str, endcap_params, *,
                   z_candidates=None, min_size: int = 3) -> tuple[np.ndarray, Projection]:
    """Endcap refinement by the vertex-z scan (:func:`refine_vertex_z` on the endcaps only)."""
    return refine_vertex_z(proj, labels, method, None, endcap_params, regions=("endcap",),
                           z_candidates=z_candidates, min_size=min_size)


_VERTEX_SCAN = {False: (), None: (), True: ("endcap",), "endcap": ("endcap",), "barrel": ("barrel",),
                "all": ("barrel", "endcap"), "both": ("barrel", "endcap")}


def vertex_scan_regions(vertex_scan) -> tuple[str, ...]:
    """The regions refined for a ``vertex_scan`` option: False/None (none), True or "endcap",
    "barrel", "all"."""
    key = vertex_scan.lower() if isinstance(vertex_scan, str) else vertex_scan
    if key not in _VERTEX_SCAN:
        raise ConfigError(f"vertex_scan={vertex_scan!r}: expected False, True/'endcap', 'barrel' or 'all'")
    return _VERTEX_SCAN[key]


def cluster(projection: Projection, method: str = "dbscan", *, vertex_scan: bool | str = False,
            z_candidates=None, **params) -> np.ndarray:
    """Locality cluster labels of projected hits (see the module docstring for the label convention).

    method: one of :data:`METHODS` (dbscan, window, density, grid).
    params: method parameters, ``name=value`` for both regions or ``barrel_name`` /
    ``endcap_name`` for one (defaults per region in :data:`METHODS`).
    vertex_scan: refine clusters by the vertex-z scan (:func:`refine_vertex_z`) over
    ``z_candidates`` (mm; default -150..150 in 2.5 mm steps): True or "endcap" for the endcaps
    (the seed papers' refinement), "barrel", or "all".
    Returns int64 (n,) labels >= 0, unique across surfaces.
    """
    if not isinstance(projection, Projection):
        raise ConfigError("cluster() needs a Projection (from trackstudy.locality.project), "
                          f"got {type(projection).__name__}")
    barrel, endcap = resolve_params(method, params)
    regions = vertex_scan_regions(vertex_scan)
    labels = _cluster_surfaces(projection, method, barrel, endcap)
    if regions:
        labels, _ = refine_vertex_z(projection, labels, method, barrel, endcap, regions=regions,
                                    z_candidates=z_candidates)
    return labels


def cluster_xyz(x, y, z, method: str = "dbscan", *, surfaces: Surfaces | None = None, z0=0.0,
                vertex_scan: bool | str = False, **params) -> np.ndarray:
    """Project hits (mm) and cluster them in one call: ``cluster(project(x, y, z), method, **params)``."""
    return cluster(project(x, y, z, surfaces=surfaces, z0=z0), method, vertex_scan=vertex_scan, **params)
