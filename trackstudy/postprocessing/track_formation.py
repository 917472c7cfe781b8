"""Track formation: per-hit model outputs of one event -> a Kaggle submission.

Every function returns ``pd.DataFrame(event_id, hit_id, track_id)`` (int64), one row per input
hit, in input order. Every hit is assigned: hits a method leaves alone (DBSCAN/HDBSCAN noise,
hits predicted as noise, hits without a close neighbour) become one-hit tracks with their own
id, so the output is valid for the official TrackML scorer (track ids are 0 .. n_tracks-1).

* EncCla: :func:`tracks_from_classes` -- hits sharing the argmax class (optionally also the
  locality cluster) form a track; hits of the noise class are singletons.
* EncReg / JM regression stage: :func:`tracks_from_params` -- scikit-learn HDBSCAN or DBSCAN on the
  predicted (theta, sin phi, cos phi, q) (optionally with the latents), column-weighted.
* Contrastive: :func:`tracks_from_embeddings` -- ``method="knn"``: for each hit its k nearest
  neighbours by cosine similarity (within its locality cluster, or over the whole event), edges
  kept above a similarity threshold (optionally only mutual ones), tracks = connected components
  (scipy.sparse.csgraph); ``method="dbscan"/"hdbscan"``: DBSCAN / HDBSCAN on the unit-normalised
  embeddings (Euclidean distance d relates to cosine s by d^2 = 2 - 2 s).

Restricted to locality clusters (the default when labels are given), the neighbour search works
cluster by cluster on padded blocks (:func:`trackstudy.models.masks.cluster_blocks`, the same
layout as the contrastive loss), so its cost is sum of cluster size^2, not N^2; DBSCAN then runs on
that eps-graph (:func:`dbscan_graph`, scikit-learn's labels without its per-point Python arrays)
and scikit-learn's HDBSCAN once per cluster.

Track formation is timed apart from the encoder with :class:`trackstudy.device.StageClock`.
:func:`tune_track_formation` grid-searches the parameters on validation events.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import DBSCAN, HDBSCAN

from trackstudy.device import StageClock
from trackstudy.errors import ConfigError, DataError
from trackstudy.kinematics import origin_circle_pt
from trackstudy.metrics import evaluate_event
from trackstudy.models.masks import cluster_blocks

# ----------------------------------------------------------------------------- parameters

@dataclass
class ClassTrackParams:
    """EncCla track formation. ``noise_class``: the class index meaning "noise" (hits predicted in
    it become singletons; None: no noise class). ``min_prob``: hits whose top class probability is
    below it become singletons (needs logits). ``split_by_cluster``: a track is (cluster, class)."""

    noise_class: int | None = None
    min_prob: float = 0.0
    split_by_cluster: bool = False


@dataclass
class ParamTrackParams:
    """EncReg track formation: clustering of predicted parameters.

    ``algorithm`` "hdbscan" or "dbscan"; ``eps``/``min_samples`` for DBSCAN; ``min_cluster_size``/
    ``min_samples`` for HDBSCAN (min_samples None = min_cluster_size there); ``use_latent`` appends
    the free latents; ``weights`` scales the columns (theta, sin phi, cos phi, q[, latents...]);
    ``split_by_cluster`` forbids tracks across locality clusters; ``selection`` is HDBSCAN's
    cluster_selection_method ("eom" or "leaf").
    """

    algorithm: str = "hdbscan"
    eps: float = 0.02
    min_samples: int | None = 2
    min_cluster_size: int = 2
    selection: str = "eom"
    use_latent: bool = False
    weights: tuple[float, ...] | None = None
    split_by_cluster: bool = False

    def __post_init__(self):
        if self.algorithm not in ("hdbscan", "dbscan"):
            raise ConfigError(f"ParamTrackParams.algorithm must be 'hdbscan' or 'dbscan', got {self.algorithm!r}")
        _check_clustering(self)


@dataclass
class EmbeddingTrackParams:
    """Contrastive track formation (see the module docstring).

    knn: ``k`` neighbours (about the number of pixel layers a track crosses), ``threshold`` minimum
    cosine similarity of an edge, ``mutual`` keep only edges found from both ends, ``per_cluster``
    search neighbours only inside the hit's locality cluster (needs cluster labels; otherwise the
    whole event, chunked). dbscan/hdbscan: ``eps`` (Euclidean on unit vectors), ``min_samples``,
    ``min_cluster_size``, ``selection`` (HDBSCAN "eom"/"leaf"). ``device`` for the knn search and the
    per-cluster DBSCAN graph: "auto" (CUDA when present), "cpu", "cuda".

    Full-event post-processing (every method): ``max_hits`` (0 = no cap) splits a track larger
    than a particle can be by raising the similarity its edges (knn edges, or the eps-graph of
    dbscan / hdbscan) need, step by step, until every piece fits (pieces that never fit become
    one-hit tracks); ``merge_threshold`` (None = off)
    joins two tracks of different locality clusters whose mean unit embeddings have a cosine
    similarity >= it and are each other's nearest such track (one particle cut by the clustering),
    never beyond ``max_hits``; ``min_filter`` (0 = off, needs the model's hit-filter output)
    dissolves tracks whose mean hit-filter probability is below it into one-hit tracks, so that the
    hits of low-pT particles and noise make no track candidates; ``min_track_pt`` (GeV, 0 = off,
    needs the hit positions) does the same from the track's own hits: the pT of the circle through
    the origin fitted to them (most fakes at mu = 200 are pure pieces of particles below 0.5 GeV).
    """

    method: str = "knn"
    k: int = 8
    threshold: float = 0.8
    mutual: bool = False
    per_cluster: bool = True
    eps: float = 0.3
    min_samples: int | None = 2
    min_cluster_size: int = 2
    selection: str = "eom"
    device: str = "auto"
    max_hits: int = 0
    merge_threshold: float | None = None
    min_filter: float = 0.0
    min_track_pt: float = 0.0

    def __post_init__(self):
        if self.max_hits < 0:
            raise ConfigError(f"EmbeddingTrackParams.max_hits must be >= 0 (0 = no cap), got {self.max_hits}")
        if self.merge_threshold is not None and not -1.0 <= self.merge_threshold <= 1.0:
            raise ConfigError("EmbeddingTrackParams.merge_threshold is a cosine similarity in [-1, 1] (or None), "
                              f"got {self.merge_threshold}")
        if not (np.isfinite(self.min_track_pt) and self.min_track_pt >= 0):
            raise ConfigError(f"EmbeddingTrackParams.min_track_pt is a pT in GeV >= 0, got {self.min_track_pt}")
        if not 0.0 <= self.min_filter <= 1.0:
            raise ConfigError(f"EmbeddingTrackParams.min_filter is a probability in [0, 1], got {self.min_filter}")
        if self.method not in ("knn", "dbscan", "hdbscan"):
            raise ConfigError(f"EmbeddingTrackParams.method must be 'knn', 'dbscan' or 'hdbscan', got {self.method!r}")
        if self.k < 1:
            raise ConfigError(f"EmbeddingTrackParams.k must be >= 1, got {self.k}")
        if not -1.0 <= self.threshold <= 1.0:
            raise ConfigError(f"EmbeddingTrackParams.threshold is a cosine similarity in [-1, 1], got {self.threshold}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"EmbeddingTrackParams.device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        _check_clustering(self)


def _check_clustering(p) -> None:
    if p.selection not in ("eom", "leaf"):
        raise ConfigError(f"{type(p).__name__}.selection must be 'eom' or 'leaf', got {p.selection!r}")
    if p.eps <= 0:
        raise ConfigError(f"{type(p).__name__}.eps must be > 0, got {p.eps}")
    if p.min_samples is not None and p.min_samples < 1:
        raise ConfigError(f"{type(p).__name__}.min_samples must be >= 1, got {p.min_samples}")
    if p.min_cluster_size < 2:
        raise ConfigError(f"{type(p).__name__}.min_cluster_size must be >= 2, got {p.min_cluster_size}")


def params_to_dict(params) -> dict:
    """Plain dict of a parameter dataclass (for checkpoints, YAML and tables)."""
    d = asdict(params)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


#: The parameter class of each kind of track formation, by the name runs store it under.
PARAM_KINDS = {"class": ClassTrackParams, "param": ParamTrackParams, "embedding": EmbeddingTrackParams}


def default_params(family: str, head_cfg=None):
    """The track-formation parameters a model family starts from: road classes (enc_cla, jm; the
    head's noise class, when it has one, makes singletons), parameter clustering (enc_reg),
    embedding neighbours (contrastive). ``head_cfg``: the model's HeadConfig (n_classes, noise)."""
    if family == "contrastive":
        return EmbeddingTrackParams()
    if family == "enc_reg":
        return ParamTrackParams()
    if family in ("enc_cla", "jm"):
        noise = head_cfg is not None and getattr(head_cfg, "noise", None) == "class"
        return ClassTrackParams(noise_class=head_cfg.n_classes if noise else None)
    raise ConfigError(f"track formation: no defaults for model family {family!r}")


def model_params(model):
    """The parameters a model's tracks are formed with: those tuned for it (``model.track_params``,
    set by the trainer and by ``load_run``), else its family's defaults."""
    tuned = getattr(model, "track_params", None)
    return tuned if tuned is not None else default_params(model.family, getattr(model, "head_cfg", None))


def params_record(params) -> dict:
    """``{"kind": ..., **fields}``: how runs store track-formation parameters (checkpoints, summary.json)."""
    kinds = {cls: kind for kind, cls in PARAM_KINDS.items()}
    if type(params) not in kinds:
        raise ConfigError(f"track_params must be one of {', '.join(c.__name__ for c in kinds)}, "
                          f"got {type(params).__name__}")
    return {"kind": kinds[type(params)], **params_to_dict(params)}


def params_from_record(record: Mapping):
    """The parameter dataclass of a :func:`params_record` dict (ConfigError on an unknown kind or field)."""
    tp = dict(record)
    kind = tp.pop("kind", None)
    if kind not in PARAM_KINDS:
        raise ConfigError(f"track_params: unknown kind {kind!r}; expected one of {', '.join(PARAM_KINDS)}")
    if tp.get("weights") is not None:
        tp["weights"] = tuple(tp["weights"])
    try:
        return PARAM_KINDS[kind](**tp)
    except TypeError as exc:
        raise ConfigError(f"track_params ({kind}): {exc}") from None


# ----------------------------------------------------------------------------- helpers

def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _check_rows(hit_ids: np.ndarray, arr: np.ndarray, what: str) -> None:
    if arr.shape[0] != hit_ids.shape[0]:
        raise DataError(f"track formation: {what} has {arr.shape[0]} rows but there are {hit_ids.shape[0]} hit ids")


def _as_cluster(cluster, n: int) -> np.ndarray | None:
    if cluster is None:
        return None
    c = _np(cluster)
    if c.shape != (n,):
        raise DataError(f"track formation: cluster labels have shape {c.shape}, expected ({n},)")
    if not np.issubdtype(c.dtype, np.integer):
        raise DataError(f"track formation: cluster labels must be integers, got {c.dtype}")
    return c.astype(np.int64, copy=False)


def labels_to_track_ids(labels: np.ndarray) -> np.ndarray:
    """Consecutive int64 track ids 0..n-1 from labels where negative labels mean "alone":
    each such hit gets its own new id."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    alone = labels < 0
    if alone.any():
        top = labels.max(initial=-1) + 1
        labels[alone] = top + np.arange(int(alone.sum()))
    _, ids = np.unique(labels, return_inverse=True)
    return ids.astype(np.int64).reshape(-1)


def _combine(a: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """Labels of the pairs (a, b), negative where a is negative."""
    if b is None:
        return a
    _, pair = np.unique(np.stack([b, a], axis=1), axis=0, return_inverse=True)
    return np.where(a < 0, -1, pair.reshape(-1))


def submission(event_id: int, hit_ids, track_ids) -> pd.DataFrame:
    """The Kaggle submission table of one event (int64 columns event_id, hit_id, track_id)."""
    hit_ids = _np(hit_ids).astype(np.int64, copy=False)
    return pd.DataFrame({"event_id": np.full(len(hit_ids), int(event_id), dtype=np.int64),
                         "hit_id": hit_ids, "track_id": np.asarray(track_ids, dtype=np.int64)})


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("EmbeddingTrackParams.device='cuda' but no CUDA device is available")
    return torch.device(name)


# ----------------------------------------------------------------------------- EncCla

def tracks_from_classes(hit_ids, pred, *, event_id: int = 0, cluster=None,
                        params: ClassTrackParams | None = None) -> pd.DataFrame:
    """EncCla: hits sharing the predicted class form a track.

    pred: (N,) int class per hit, or (N, C) logits (argmax; ``min_prob`` needs logits).
    """
    params = params or ClassTrackParams()
    hit_ids = _np(hit_ids)
    pred = _np(pred)
    _check_rows(hit_ids, pred, "the class prediction")
    if pred.ndim == 2:
        logits = pred.astype(np.float64)
        cls = logits.argmax(axis=1)
        if params.min_prob > 0:
            z = logits - logits.max(axis=1, keepdims=True)
            top = 1.0 / np.exp(z).sum(axis=1)  # softmax probability of the argmax class
            cls = np.where(top < params.min_prob, -1, cls)
    elif pred.ndim == 1:
        if params.min_prob > 0:
            raise ConfigError("ClassTrackParams.min_prob needs logits (N, C), not class indices")
        cls = pred.astype(np.int64)
    else:
        raise DataError(f"track formation: class prediction must be (N,) or (N, C), got shape {pred.shape}")
    cls = cls.astype(np.int64)
    if params.noise_class is not None:
        cls = np.where(cls == params.noise_class, -1, cls)
    c = _as_cluster(cluster, len(hit_ids)) if params.split_by_cluster else None
    if params.split_by_cluster and c is None:
        raise ConfigError("ClassTrackParams.split_by_cluster needs the cluster labels")
    return submission(event_id, hit_ids, labels_to_track_ids(_combine(cls, c)))


# ----------------------------------------------------------------------------- EncReg

def _sk_cluster(points: np.ndarray, algorithm: str, eps: float, min_samples: int | None,
                min_cluster_size: int, selection: str = "eom") -> np.ndarray:
    if len(points) == 0:
        return np.zeros(0, dtype=np.int64)
    if algorithm == "dbscan":
        return DBSCAN(eps=eps, min_samples=min_samples or 1).fit(points).labels_
    if len(points) < max(2, min_cluster_size, min_samples or 0):
        # too few points for HDBSCAN (sklearn raises when min_samples exceeds them): all noise,
        # and noise hits get their own track ids downstream
        return np.full(len(points), -1)
    return HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples, cluster_selection_method=selection,
                   copy=True).fit(points).labels_


def dbscan_graph(n: int, src: np.ndarray, dst: np.ndarray, min_samples: int) -> np.ndarray:
    """DBSCAN labels (-1 = noise, clusters 0.. in scikit-learn's order) of n points from their
    eps-neighbourhood graph: the directed pairs (src, dst), i != j, of points within eps, given in
    both directions.

    Written here because scikit-learn's DBSCAN(metric="precomputed") turns a sparse graph into
    one Python array per point (~0.3 s at 48k hits, more than the rest of track formation), while
    on a symmetric graph DBSCAN is three vectorised steps: core points (>= min_samples points within
    eps, itself included); clusters = connected components of the core points (scipy); a border
    point joins the cluster of its first-found core neighbour, i.e. scikit-learn's label order
    (clusters numbered by their lowest-index core point, a border point taking the lowest label
    among its core neighbours' clusters). Tested equal to scikit-learn's labels."""
    src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
    labels = np.full(n, -1, dtype=np.int64)
    core = np.bincount(src, minlength=n) + 1 >= max(int(min_samples), 1)
    if not core.any():
        return labels
    cc = core[src] & core[dst]
    graph = sp.coo_matrix((np.ones(int(cc.sum()), dtype=np.int8), (src[cc], dst[cc])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    core_idx = np.flatnonzero(core)
    comp_core = comp[core_idx]
    first = np.full(int(comp.max()) + 1, n, dtype=np.int64)
    np.minimum.at(first, comp_core, core_idx)  # each component's lowest core point
    used = np.flatnonzero(first < n)
    rank = np.full(len(first), -1, dtype=np.int64)
    rank[used[np.argsort(first[used], kind="stable")]] = np.arange(len(used))
    labels[core_idx] = rank[comp_core]
    edge = core[src] & ~core[dst]  # core -> border
    if edge.any():
        best = np.full(n, n, dtype=np.int64)
        np.minimum.at(best, dst[edge], labels[src[edge]])
        border = best < n
        labels[border] = best[border]
    return labels


def _dbscan_within(n: int, src: torch.Tensor, dst: torch.Tensor, dist: torch.Tensor, eps: float,
                   min_samples: int | None) -> np.ndarray:
    """:func:`dbscan_graph` of the candidate pairs of a block search and their distances."""
    keep = (dist <= eps).cpu().numpy()  # DBSCAN's own radius test on the distances
    src, dst = src.cpu().numpy()[keep], dst.cpu().numpy()[keep]
    # both directions once: the block search may find a pair at the threshold in one direction only
    a = sp.csr_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n))
    a = (a + a.T).tocoo()
    return dbscan_graph(n, a.row, a.col, min_samples or 1)


def _cluster_points(points: np.ndarray, cluster: np.ndarray | None, algorithm: str, eps: float,
                    min_samples: int | None, min_cluster_size: int, selection: str = "eom", *,
                    device: str = "cpu") -> np.ndarray:
    """(H)DBSCAN labels (-1 = noise) of points (N, D), never joining two locality clusters.

    Without clusters: scikit-learn on all points. DBSCAN within clusters: the eps-neighbourhoods
    come from the block search of :func:`knn_edges` (far faster than sklearn's tree search in D
    dimensions at 50k hits) and go to :func:`dbscan_graph` (unit-normalised embeddings take the
    cosine form of the same search in :func:`tracks_from_embeddings`). HDBSCAN within clusters: one fit per cluster
    (sklearn HDBSCAN takes no sparse graph), labels offset to stay unique.
    """
    n = len(points)
    if cluster is None:
        return _sk_cluster(points, algorithm, eps, min_samples, min_cluster_size, selection)
    if algorithm == "dbscan":
        dev = _device(device)
        x = torch.as_tensor(points, dtype=torch.float32, device=dev)
        c = torch.as_tensor(cluster, device=dev)
        src, dst = knn_edges(x, None, -eps, c, metric="euclidean")
        return _dbscan_within(n, src, dst, torch.linalg.vector_norm(x[src] - x[dst], dim=-1), eps, min_samples)
    labels = np.full(n, -1, dtype=np.int64)
    order = np.argsort(cluster, kind="stable")
    bounds = np.flatnonzero(np.diff(cluster[order])) + 1
    offset = 0
    for seg in np.split(order, bounds):
        if cluster[seg[0]] < 0:
            continue
        lab = _sk_cluster(points[seg], algorithm, eps, min_samples, min_cluster_size, selection)
        labels[seg] = np.where(lab >= 0, lab + offset, -1)
        offset += int(lab.max(initial=-1)) + 1
    return labels


def tracks_from_params(hit_ids, params_pred, *, event_id: int = 0, latent=None, cluster=None,
                       params: ParamTrackParams | None = None) -> pd.DataFrame:
    """EncReg: cluster the predicted (theta, sin phi, cos phi, q) [+ latents] with HDBSCAN/DBSCAN.

    params_pred (N, 4); latent (N, L) or None. Noise points become one-hit tracks.
    """
    params = params or ParamTrackParams()
    hit_ids = _np(hit_ids)
    x = _np(params_pred).astype(np.float64)
    _check_rows(hit_ids, x, "the regressed parameters")
    if params.use_latent:
        if latent is None:
            raise ConfigError("ParamTrackParams.use_latent needs the latent outputs")
        lat = _np(latent).astype(np.float64)
        _check_rows(hit_ids, lat, "the latents")
        x = np.concatenate([x, lat], axis=1)
    if params.weights is not None:
        w = np.asarray(params.weights, dtype=np.float64)
        if w.shape != (x.shape[1],):
            raise ConfigError(f"ParamTrackParams.weights has {w.size} entries for {x.shape[1]} columns")
        x = x * w
    if not np.isfinite(x).all():
        raise DataError("track formation: the regressed parameters contain NaN or inf")
    c = _as_cluster(cluster, len(hit_ids)) if params.split_by_cluster else None
    if params.split_by_cluster and c is None:
        raise ConfigError("ParamTrackParams.split_by_cluster needs the cluster labels")
    labels = _cluster_points(x, c, params.algorithm, params.eps, params.min_samples, params.min_cluster_size,
                             params.selection)
    return submission(event_id, hit_ids, labels_to_track_ids(labels))


# ----------------------------------------------------------------------------- contrastive

def _top_k_per_row(rows: torch.Tensor, vals: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask keeping, for each row id, its k entries of largest value (only rows with
    more than k entries are sorted: with a trained embedding they are few)."""
    keep = torch.ones_like(rows, dtype=torch.bool)
    counts = torch.bincount(rows)
    over = (counts[rows] > k).nonzero().squeeze(1)
    if over.numel():
        order = torch.argsort(vals[over], descending=True, stable=True)
        order = order[torch.argsort(rows[over][order], stable=True)]  # by row, then value descending
        r = rows[over][order]
        first = torch.ones_like(r, dtype=torch.bool)
        first[1:] = r[1:] != r[:-1]
        pos = torch.arange(len(r), device=r.device)
        start = torch.cummax(torch.where(first, pos, 0), 0).values
        keep[over[order]] = (pos - start) < k
    return keep


def _block_edges(sim: torch.Tensor, ok: torch.Tensor, k: int | None, threshold: float):
    """(g, i, j) of each row's k largest ``sim`` >= threshold where ``ok`` (k None: all of them);
    sim, ok (G, S, S)."""
    cand = sim >= threshold
    cand &= ok
    g, i, j = cand.nonzero(as_tuple=True)
    if k is None:
        return g, i, j
    # A trained embedding puts only a track's few hits above the threshold: select among those
    # candidates. If most pairs pass (untrained embedding, low threshold), topk over rows is cheaper.
    if len(g) <= 4 * k * sim.shape[0] * sim.shape[1]:
        keep = _top_k_per_row(g * sim.shape[1] + i, sim[g, i, j], k)
        return g[keep], i[keep], j[keep]
    kk = min(k, sim.shape[-1] - 1)
    val, nb = sim.masked_fill(~ok, float("-inf")).topk(kk, dim=-1)  # (G, S, kk)
    g, i, n = (val >= threshold).nonzero(as_tuple=True)
    return g, i, nb[g, i, n]


def knn_edges(emb: torch.Tensor, k: int | None, threshold: float, cluster: torch.Tensor | None = None,
              *, metric: str = "cosine", max_block_elements: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """Directed edges (src, dst) from each hit to its k most similar hits with similarity
    >= threshold (k None: all of them, a radius graph); within locality clusters when ``cluster``
    (N,) int64 is given (labels < 0: no neighbours), else over all hits (in row chunks).
    metric "cosine": similarity = dot product, emb (N, D) must be unit-normalised;
    "euclidean": similarity = -distance (so threshold = -radius)."""
    n = emb.shape[0]
    srcs, dsts = [], []
    if cluster is not None:
        for idx, valid in cluster_blocks(cluster, min_size=2, max_block_elements=max_block_elements):
            s = idx.shape[1]
            e = emb[idx]  # (G, S, D)
            sim = torch.bmm(e, e.transpose(1, 2)) if metric == "cosine" else -torch.cdist(e, e)  # (G, S, S)
            ok = valid[:, None, :] & valid[:, :, None] & ~torch.eye(s, dtype=torch.bool, device=emb.device)
            g, i, j = _block_edges(sim, ok, k, threshold)
            srcs.append(idx[g, i])
            dsts.append(idx[g, j])
    elif n > 1:
        rows = max(1, max_block_elements // n)
        ar = torch.arange(n, device=emb.device)
        for r0 in range(0, n, rows):
            q = emb[r0:r0 + rows]
            sim = (q @ emb.T)[None] if metric == "cosine" else -torch.cdist(q, emb)[None]  # (1, rows, N)
            ok = (ar[r0:r0 + rows, None] != ar[None, :])[None]
            g, i, j = _block_edges(sim, ok, k, threshold)
            srcs.append(i + r0)
            dsts.append(j)
    if not srcs:
        empty = torch.zeros(0, dtype=torch.int64, device=emb.device)
        return empty, empty
    return torch.cat(srcs), torch.cat(dsts)


def components_from_edges(n: int, src: np.ndarray, dst: np.ndarray, *, mutual: bool = False) -> np.ndarray:
    """Connected-component label (0..) of each of n nodes given directed edges; ``mutual`` keeps
    an edge only if its reverse is also present."""
    a = sp.coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n)).tocsr()
    if mutual:
        a = a.multiply(a.T).tocsr()
    _, labels = connected_components(a, directed=True, connection="weak")
    return labels.astype(np.int64)


def _track_sizes(labels: np.ndarray) -> np.ndarray:
    """Hits per track label (labels < 0: one-hit tracks, not counted)."""
    ok = labels >= 0
    return np.bincount(labels[ok]) if ok.any() else np.zeros(0, dtype=np.int64)


def _split_oversized(labels: np.ndarray, src: np.ndarray, dst: np.ndarray, sim: np.ndarray, threshold: float,
                     max_hits: int, mutual: bool) -> np.ndarray:
    """Labels with every component larger than ``max_hits`` split by raising the similarity its
    edges need (threshold + (1 - threshold) * 0.25, 0.5, 0.75, 0.9, 0.97); pieces still too large
    at the end become one-hit tracks (-1). Only the oversized components are revisited."""
    labels = labels.copy()
    n = len(labels)
    for frac in (0.25, 0.5, 0.75, 0.9, 0.97):
        big = np.flatnonzero(_track_sizes(labels) > max_hits)
        if big.size == 0:
            return labels
        in_big = np.isin(labels, big)
        cut = threshold + (1.0 - threshold) * frac
        keep = in_big[src] & in_big[dst] & (labels[src] == labels[dst]) & (sim >= cut)
        sub = components_from_edges(n, src[keep], dst[keep], mutual=mutual)
        labels[in_big] = labels.max(initial=-1) + 1 + sub[in_big]  # fresh labels for the pieces
    sizes = _track_sizes(labels)
    labels[(labels >= 0) & (sizes[np.maximum(labels, 0)] > max_hits)] = -1
    return labels


def _merge_across_clusters(labels: np.ndarray, emb: torch.Tensor, cluster: np.ndarray, threshold: float,
                           max_hits: int) -> np.ndarray:
    """Join tracks (labels >= 0, at least 2 hits) of different locality clusters whose mean unit
    embeddings are mutual nearest neighbours with cosine >= threshold; merged size <= max_hits
    (when > 0). Each track is merged at most once."""
    ok = labels >= 0
    if not ok.any():
        return labels
    lab = labels[ok]
    sizes = np.bincount(lab)
    ntr = len(sizes)
    cent = torch.zeros(ntr, emb.shape[1], dtype=emb.dtype, device=emb.device)
    cent.index_add_(0, torch.as_tensor(lab, device=emb.device), emb[torch.as_tensor(np.flatnonzero(ok),
                                                                                    device=emb.device)])
    cent = torch.nn.functional.normalize(cent, dim=-1)
    track_cluster = np.zeros(ntr, dtype=np.int64)
    track_cluster[lab] = cluster[ok]
    cand = np.flatnonzero(sizes >= 2)
    if cand.size < 2:
        return labels
    c = cent[torch.as_tensor(cand, device=emb.device)]
    tc = torch.as_tensor(track_cluster[cand], device=emb.device)
    best = torch.empty(len(cand), dtype=torch.int64, device=emb.device)
    best_sim = torch.empty(len(cand), dtype=c.dtype, device=emb.device)
    rows = max(1, (1 << 24) // len(cand))
    for r0 in range(0, len(cand), rows):
        sim = c[r0:r0 + rows] @ c.T  # (rows, M)
        sim = sim.masked_fill(tc[r0:r0 + rows, None] == tc[None, :], float("-inf"))  # other clusters only
        best_sim[r0:r0 + rows], best[r0:r0 + rows] = sim.max(dim=1)
    best, best_sim = best.cpu().numpy(), best_sim.cpu().numpy()
    a = np.arange(len(cand))
    mutual = (best[best] == a) & (a < best) & (best_sim >= threshold)
    if max_hits > 0:
        mutual &= sizes[cand] + sizes[cand[best]] <= max_hits
    remap = np.arange(ntr)
    remap[cand[best[mutual]]] = cand[a[mutual]]
    out = labels.copy()
    out[ok] = remap[lab]
    return out


def _dissolve(labels: np.ndarray, drop: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> np.ndarray:
    """Labels with the tracks that ``drop(track labels, hit rows)`` marks (a bool per track label,
    computed from the tracked hits) dissolved into one-hit tracks (-1)."""
    ok = labels >= 0
    if not ok.any():
        return labels
    lab = labels[ok]
    out = labels.copy()
    out[ok] = np.where(drop(lab, np.flatnonzero(ok))[lab], -1, lab)
    return out


def _filter_tracks(labels: np.ndarray, prob: np.ndarray, min_filter: float) -> np.ndarray:
    """Tracks whose mean hit-filter probability is below ``min_filter`` dissolved."""
    return _dissolve(labels, lambda lab, rows: np.bincount(lab, weights=prob[rows])
                     / np.maximum(np.bincount(lab), 1) < min_filter)


def _low_pt_tracks(labels: np.ndarray, xyz: np.ndarray, min_pt: float) -> np.ndarray:
    """Tracks of >= 2 hits whose origin-circle pT is below ``min_pt`` (GeV) dissolved (NaN, a
    one-hit track, is left alone)."""
    return _dissolve(labels, lambda lab, rows: np.nan_to_num(
        origin_circle_pt(lab, xyz[rows, 0], xyz[rows, 1]), nan=np.inf) < min_pt)


def tracks_from_embeddings(hit_ids, embedding, *, event_id: int = 0, cluster=None,
                           params: EmbeddingTrackParams | None = None, hit_filter=None, xyz=None) -> pd.DataFrame:
    """Contrastive: tracks from neighbours in embedding space (see the module docstring).

    embedding (N, D) (need not be normalised); cluster (N,) int locality labels or None;
    hit_filter (N,) hit-filter logits of the model (needed when ``params.min_filter`` > 0);
    xyz (N, 3) hit positions in mm (needed when ``params.min_track_pt`` > 0).
    """
    params = params or EmbeddingTrackParams()
    hit_ids = _np(hit_ids)
    n = len(hit_ids)
    c = _as_cluster(cluster, n)
    dev = _device(params.device)
    emb = embedding if isinstance(embedding, torch.Tensor) else torch.from_numpy(np.array(embedding))
    emb = emb.detach().to(dev, torch.float32)
    _check_rows(hit_ids, emb, "the embedding")
    if not torch.isfinite(emb).all():
        raise DataError("track formation: the embedding contains NaN or inf")
    emb = torch.nn.functional.normalize(emb, dim=-1)
    ct = torch.as_tensor(c, device=dev) if (params.per_cluster and c is not None) else None
    if params.method == "knn":
        src, dst = knn_edges(emb, params.k, params.threshold, ct)
        s_np, d_np = src.cpu().numpy(), dst.cpu().numpy()
        labels = components_from_edges(n, s_np, d_np, mutual=params.mutual)
        if params.max_hits > 0:
            sim = (emb[src] * emb[dst]).sum(-1).cpu().numpy()
            labels = _split_oversized(labels, s_np, d_np, sim, params.threshold, params.max_hits, params.mutual)
    else:
        # the eps-graph (cosine >= 1 - eps^2 / 2 within the locality clusters): DBSCAN's
        # neighbourhoods, and where tracks too large are split, like knn tracks
        cos_min = 1.0 - params.eps ** 2 / 2.0
        graph = None
        if params.method == "dbscan" and ct is not None:
            graph = knn_edges(emb, None, cos_min, ct)
            sim = (emb[graph[0]] * emb[graph[1]]).sum(-1)
            labels = _dbscan_within(n, *graph, torch.sqrt(torch.clamp(2.0 - 2.0 * sim, min=0.0)), params.eps,
                                    params.min_samples)
        else:  # HDBSCAN, or DBSCAN over all hits: scikit-learn
            labels = _cluster_points(emb.cpu().numpy().astype(np.float64), c if params.per_cluster else None,
                                     params.method, params.eps, params.min_samples, params.min_cluster_size,
                                     params.selection)
        if params.max_hits > 0 and (_track_sizes(labels) > params.max_hits).any():
            if graph is None:
                graph = knn_edges(emb, None, cos_min, ct)
                sim = (emb[graph[0]] * emb[graph[1]]).sum(-1)
            labels = _split_oversized(labels, graph[0].cpu().numpy(), graph[1].cpu().numpy(), sim.cpu().numpy(),
                                      cos_min, params.max_hits, False)
    if params.merge_threshold is not None and c is not None:
        labels = _merge_across_clusters(labels, emb, c, params.merge_threshold, params.max_hits)
    if params.min_filter > 0:
        if hit_filter is None:
            raise ConfigError("EmbeddingTrackParams.min_filter > 0 needs the model's hit-filter output "
                              "(a contrastive model trained with model.head.filter_weight > 0)")
        logit = _np(hit_filter).astype(np.float64).reshape(-1)
        _check_rows(hit_ids, logit, "the hit filter")
        labels = _filter_tracks(labels, 1.0 / (1.0 + np.exp(-logit)), params.min_filter)
    if params.min_track_pt > 0:
        if xyz is None:
            raise ConfigError("EmbeddingTrackParams.min_track_pt > 0 needs the hit positions (xyz)")
        pos = _np(xyz).astype(np.float64).reshape(-1, 3)
        _check_rows(hit_ids, pos, "the hit positions")
        labels = _low_pt_tracks(labels, pos, params.min_track_pt)
    return submission(event_id, hit_ids, labels_to_track_ids(labels))


# ----------------------------------------------------------------------------- dispatch, timing, tuning

def form_tracks(outputs: Mapping, hit_ids, *, event_id: int = 0, cluster=None, params=None, xyz=None) -> pd.DataFrame:
    """Track formation from one event's output dict (padding removed), chosen by the outputs
    present and the type of ``params``: ``embedding`` -> embeddings, ``logits`` -> classes,
    ``params`` -> parameter clustering. A joint model (logits and params) uses the classes
    unless ``params`` is a :class:`ParamTrackParams`."""
    if isinstance(params, EmbeddingTrackParams) or (params is None and "embedding" in outputs):
        if "embedding" not in outputs:
            raise ConfigError("EmbeddingTrackParams given but the outputs have no 'embedding'")
        return tracks_from_embeddings(hit_ids, outputs["embedding"], event_id=event_id, cluster=cluster,
                                      params=params, hit_filter=outputs.get("filter"), xyz=xyz)
    if isinstance(params, ParamTrackParams) or (params is None and "logits" not in outputs and "params" in outputs):
        if "params" not in outputs:
            raise ConfigError("ParamTrackParams given but the outputs have no 'params'")
        return tracks_from_params(hit_ids, outputs["params"], event_id=event_id, latent=outputs.get("latent"),
                                  cluster=cluster, params=params)
    if "logits" in outputs:
        return tracks_from_classes(hit_ids, outputs["logits"], event_id=event_id, cluster=cluster, params=params)
    raise ConfigError(f"form_tracks: no known output among {sorted(outputs)} "
                      "(expected 'embedding', 'logits' or 'params')")


#: Track-formation grids tuned at the end of training, per family. A list of mappings is tuned
#: one after the other (each from the family's base parameters) and the best point wins.
TUNE_GRIDS: dict = {
    "contrastive": [
        {"method": ["knn"], "k": [4, 6, 8, 12, 16],
         "threshold": [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995],
         "mutual": [False, True]},
        {"method": ["dbscan"], "eps": [0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4], "min_samples": [1, 2, 3]},
        # min_samples <= min_cluster_size: sklearn's HDBSCAN rejects a locality cluster smaller than min_samples
        {"method": ["hdbscan"], "min_cluster_size": [2, 3, 4], "min_samples": [1, 2], "selection": ["eom", "leaf"]},
    ],
    "enc_reg": [
        {"algorithm": ["dbscan"], "eps": [0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12], "min_samples": [1, 2, 3]},
        {"algorithm": ["hdbscan"], "min_cluster_size": [2, 3, 4, 5], "min_samples": [1, 2]},
    ],
    "enc_cla": [{"min_prob": [0.0, 0.1, 0.2, 0.3, 0.5], "split_by_cluster": [False, True]}],
    "jm": [{"min_prob": [0.0, 0.1, 0.2, 0.3, 0.5], "split_by_cluster": [False, True]}],
}


def _metric_value(result, key: str) -> float:
    if isinstance(result, Mapping):
        if key not in result:
            raise ConfigError(f"tune_track_formation: metric {key!r} not among {sorted(result)}")
        return float(result[key])
    if hasattr(result, key):
        return float(getattr(result, key))
    raise ConfigError(f"tune_track_formation: metric {key!r} not in the evaluation result {type(result).__name__}")


def tune_track_formation(events: Sequence[Mapping], grid: Mapping[str, Iterable], *, base=None,
                         metric: str = "dm_efficiency", evaluate: Callable | None = None,
                         pt_min: float = 0.9) -> tuple[object, pd.DataFrame]:
    """Grid-search track-formation parameters on validation events; returns (best params, table).

    events: dicts with ``outputs`` (one event's output dict, padding removed), ``hit_ids``,
    ``truth``, ``particles`` and optionally ``event_id`` and ``cluster``.
    grid: parameter name -> values, over the fields of ``base`` (an EmbeddingTrackParams,
    ParamTrackParams or ClassTrackParams; default: guessed from the outputs like :func:`form_tracks`).
    evaluate(submission, truth, particles, pt_min=...) -> dict or object holding ``metric``;
    default :func:`trackstudy.metrics.evaluate_event`. The table has one row per grid point with
    the mean metric over events and the mean track-formation seconds per event, best first.
    """
    if not events:
        raise ConfigError("tune_track_formation: no validation events")
    if evaluate is None:
        evaluate = evaluate_event
    if base is None:
        o = events[0]["outputs"]
        base = (EmbeddingTrackParams() if "embedding" in o else ClassTrackParams() if "logits" in o
                else ParamTrackParams())
    names = {f.name for f in fields(base)}
    unknown = [k for k in grid if k not in names]
    if unknown:
        raise ConfigError(f"tune_track_formation: {type(base).__name__} has no parameter {unknown[0]!r}")
    keys = list(grid)
    rows = []
    best, best_value = None, -np.inf
    for values in itertools.product(*(list(grid[k]) for k in keys)):
        cand = replace(base, **dict(zip(keys, values)))
        scores, seconds = [], []
        for ev in events:
            clock = StageClock()
            with clock("track_formation"):
                sub = form_tracks(ev["outputs"], ev["hit_ids"], event_id=int(ev.get("event_id", 0)),
                                  cluster=ev.get("cluster"), params=cand, xyz=ev.get("xyz"))
            scores.append(_metric_value(evaluate(sub, ev["truth"], ev["particles"], pt_min=pt_min), metric))
            seconds.append(clock.seconds["track_formation"])
        finite = [v for v in scores if np.isfinite(v)]  # NaN: no reconstructable particle in an event
        value = float(np.mean(finite)) if finite else float("nan")
        rows.append({**dict(zip(keys, values)), metric: value, "seconds_per_event": float(np.mean(seconds))})
        if np.isfinite(value) and value > best_value:
            best, best_value = cand, value
    if best is None:
        raise DataError(f"tune_track_formation: {metric} is undefined on every validation event "
                        "(no reconstructable particles?)")
    table = pd.DataFrame(rows).sort_values(metric, ascending=False, kind="stable").reset_index(drop=True)
    return best, table


__all__ = ["PARAM_KINDS", "ClassTrackParams", "EmbeddingTrackParams", "ParamTrackParams", "components_from_edges",
           "dbscan_graph",
           "default_params", "form_tracks", "model_params", "params_from_record", "params_record",
           "TUNE_GRIDS", "knn_edges", "labels_to_track_ids", "params_to_dict", "submission", "tracks_from_classes",
           "tracks_from_embeddings", "tracks_from_params", "tune_track_formation"]
