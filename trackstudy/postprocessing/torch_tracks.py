"""Contrastive track formation (``method="knn"``) in torch, on the device where the embeddings are.

The same steps and parameters as :func:`trackstudy.postprocessing.track_formation.tracks_from_embeddings`
(:class:`~trackstudy.postprocessing.track_formation.EmbeddingTrackParams`), every one on tensors:

1. neighbour search in embedding space within the locality clusters
   (:func:`~trackstudy.postprocessing.track_formation.knn_edges`, already torch);
2. connected components by label propagation with pointer jumping (:func:`components_torch`):
   every hit takes the smallest hit index of its component, so components come numbered in the
   order of their first hit, as scipy's ``connected_components`` numbers them;
3. the size cap (``max_hits``), the merge across locality clusters (``merge_threshold``), the
   hit-filter cut (``min_filter``) and the origin-circle pT cut (``min_track_pt``);
4. track ids (every hit assigned once: one-hit tracks get their own ids) and, once at the end,
   the submission table: the only copy from the device to the host.

The tracks are those of the CPU implementation on the same embeddings (tests compare the
submissions); sums of the pT fit run in float64 in another order, so a track whose pT lies within
round-off of ``min_track_pt`` could fall the other way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from trackstudy.errors import ConfigError, DataError
from trackstudy.kinematics import C_LIGHT
from trackstudy.postprocessing.track_formation import EmbeddingTrackParams, knn_edges, submission


def components_torch(n: int, src: torch.Tensor, dst: torch.Tensor, *, mutual: bool = False) -> torch.Tensor:
    """Weakly connected component (0..) of each of n nodes given directed edges (``mutual``: an edge
    counts only if its reverse is present too); numbered in the order of each component's smallest node."""
    dev = src.device
    if mutual and src.numel():
        key = src * n + dst
        keep = torch.isin(dst * n + src, key)
        src, dst = src[keep], dst[keep]
    label = torch.arange(n, device=dev)
    if src.numel():
        while True:
            m = torch.minimum(label[src], label[dst])
            new = label.clone()
            new.scatter_reduce_(0, src, m, reduce="amin")
            new.scatter_reduce_(0, dst, m, reduce="amin")
            new.scatter_reduce_(0, label, new.clone(), reduce="amin")  # a node's old root follows it down
            while True:  # pointer jumping: every node points at its root
                jumped = new[new]
                if torch.equal(jumped, new):
                    break
                new = jumped
            if torch.equal(new, label):
                break
            label = new
    _, out = torch.unique(label, return_inverse=True)  # roots are smallest nodes: first-hit order
    return out


def _sizes(labels: torch.Tensor) -> torch.Tensor:
    ok = labels >= 0
    if not bool(ok.any()):
        return torch.zeros(0, dtype=torch.int64, device=labels.device)
    return torch.bincount(labels[ok])


def split_oversized_torch(labels, src, dst, sim, threshold: float, max_hits: int, mutual: bool):
    """:func:`~trackstudy.postprocessing.track_formation._split_oversized` on tensors."""
    labels = labels.clone()
    n = labels.numel()
    for frac in (0.25, 0.5, 0.75, 0.9, 0.97):
        big = (_sizes(labels) > max_hits).nonzero().squeeze(1)
        if big.numel() == 0:
            return labels
        in_big = torch.isin(labels, big)
        cut = threshold + (1.0 - threshold) * frac
        keep = in_big[src] & in_big[dst] & (labels[src] == labels[dst]) & (sim >= cut)
        sub = components_torch(n, src[keep], dst[keep], mutual=mutual)
        top = int(labels.max()) + 1 if n else 0
        labels[in_big] = top + sub[in_big]
    sizes = _sizes(labels)
    labels[(labels >= 0) & (sizes[labels.clamp(min=0)] > max_hits)] = -1
    return labels


def merge_across_clusters_torch(labels, emb, cluster, threshold: float, max_hits: int):
    """:func:`~trackstudy.postprocessing.track_formation._merge_across_clusters` on tensors."""
    ok = labels >= 0
    if not bool(ok.any()):
        return labels
    lab = labels[ok]
    sizes = torch.bincount(lab)
    ntr = sizes.numel()
    cent = torch.zeros(ntr, emb.shape[1], dtype=emb.dtype, device=emb.device)
    cent.index_add_(0, lab, emb[ok])
    cent = torch.nn.functional.normalize(cent, dim=-1)
    track_cluster = torch.zeros(ntr, dtype=torch.int64, device=emb.device)
    track_cluster[lab] = cluster[ok]
    cand = (sizes >= 2).nonzero().squeeze(1)
    if cand.numel() < 2:
        return labels
    c, tc = cent[cand], track_cluster[cand]
    best = torch.empty(cand.numel(), dtype=torch.int64, device=emb.device)
    best_sim = torch.empty(cand.numel(), dtype=c.dtype, device=emb.device)
    rows = max(1, (1 << 24) // cand.numel())
    for r0 in range(0, cand.numel(), rows):
        sim = (c[r0:r0 + rows] @ c.T).masked_fill(tc[r0:r0 + rows, None] == tc[None, :], float("-inf"))
        best_sim[r0:r0 + rows], best[r0:r0 + rows] = sim.max(dim=1)
    a = torch.arange(cand.numel(), device=emb.device)
    mutual = (best[best] == a) & (a < best) & (best_sim >= threshold)
    if max_hits > 0:
        mutual &= sizes[cand] + sizes[cand[best]] <= max_hits
    remap = torch.arange(ntr, device=emb.device)
    remap[cand[best[mutual]]] = cand[a[mutual]]
    out = labels.clone()
    out[ok] = remap[lab]
    return out


def _dissolve(labels: torch.Tensor, drop_track: torch.Tensor) -> torch.Tensor:
    ok = labels >= 0
    out = labels.clone()
    out[ok] = torch.where(drop_track[labels[ok]], -1, labels[ok])
    return out


def origin_circle_pt_torch(group: torch.Tensor, x: torch.Tensor, y: torch.Tensor, n_groups: int,
                           b_tesla: float = 2.0) -> torch.Tensor:
    """:func:`trackstudy.kinematics.origin_circle_pt` (GeV; float64) on tensors."""
    x, y = x.to(torch.float64), y.to(torch.float64)

    def s(v):
        return torch.zeros(n_groups, dtype=torch.float64, device=x.device).index_add_(0, group, v)

    q = x * x + y * y
    sxx, sxy, syy, sxq, syq = s(x * x), s(x * y), s(y * y), s(x * q), s(y * q)
    det = sxx * syy - sxy * sxy
    a = (sxq * syy - syq * sxy) / (2 * det)
    b = (syq * sxx - sxq * sxy) / (2 * det)
    radius = torch.where(det == 0, torch.inf, torch.hypot(a, b))
    radius = torch.where(s(torch.ones_like(x)) < 2, torch.nan, radius)
    return C_LIGHT * b_tesla * radius / 1000.0


def track_ids_torch(labels: torch.Tensor) -> torch.Tensor:
    """:func:`~trackstudy.postprocessing.track_formation.labels_to_track_ids` on a tensor."""
    labels = labels.clone()
    alone = labels < 0
    if bool(alone.any()):
        top = int(labels.max()) + 1 if bool((~alone).any()) else 0
        labels[alone] = top + torch.arange(int(alone.sum()), device=labels.device)
    return torch.unique(labels, return_inverse=True)[1]


def tracks_from_embeddings_torch(hit_ids, embedding: torch.Tensor, *, event_id: int = 0, cluster=None,
                                 params: EmbeddingTrackParams | None = None, hit_filter=None,
                                 xyz=None) -> pd.DataFrame:
    """The kNN track formation of the module docstring on ``embedding``'s device; arguments as
    :func:`~trackstudy.postprocessing.track_formation.tracks_from_embeddings` (tensors stay where
    they are; numpy inputs go to the embedding's device)."""
    params = params or EmbeddingTrackParams()
    if params.method != "knn":
        raise ConfigError(f"track formation on the device runs method 'knn', not {params.method!r}")
    emb = torch.as_tensor(embedding).detach().to(torch.float32)
    dev = emb.device
    n = emb.shape[0]
    if len(hit_ids) != n:
        raise DataError(f"track formation: the embedding has {n} rows but there are {len(hit_ids)} hit ids")
    if not bool(torch.isfinite(emb).all()):
        raise DataError("track formation: the embedding contains NaN or inf")

    def on_dev(a, dtype):
        t = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.array(a))  # a copy: inputs may be read-only
        t = t.detach().to(dev, dtype)
        if t.shape[0] != n:
            raise DataError(f"track formation: an input has {t.shape[0]} rows but there are {n} hit ids")
        return t

    c = None if cluster is None else on_dev(cluster, torch.int64)
    emb = torch.nn.functional.normalize(emb, dim=-1)
    src, dst = knn_edges(emb, params.k, params.threshold, c if params.per_cluster else None)
    labels = components_torch(n, src, dst, mutual=params.mutual)
    if params.max_hits > 0:
        sim = (emb[src] * emb[dst]).sum(-1)
        labels = split_oversized_torch(labels, src, dst, sim, params.threshold, params.max_hits, params.mutual)
    if params.merge_threshold is not None and c is not None:
        labels = merge_across_clusters_torch(labels, emb, c, params.merge_threshold, params.max_hits)
    if params.min_filter > 0:
        if hit_filter is None:
            raise ConfigError("EmbeddingTrackParams.min_filter > 0 needs the model's hit-filter output "
                              "(a contrastive model trained with model.head.filter_weight > 0)")
        prob = torch.sigmoid(on_dev(hit_filter, torch.float64).reshape(-1))
        ok = labels >= 0
        if bool(ok.any()):
            k = int(labels.max()) + 1
            mean = torch.zeros(k, dtype=torch.float64, device=dev).index_add_(0, labels[ok], prob[ok]) \
                / torch.bincount(labels[ok], minlength=k).clamp(min=1)
            labels = _dissolve(labels, mean < params.min_filter)
    if params.min_track_pt > 0:
        if xyz is None:
            raise ConfigError("EmbeddingTrackParams.min_track_pt > 0 needs the hit positions (xyz)")
        pos = on_dev(xyz, torch.float64).reshape(n, 3)
        ok = labels >= 0
        if bool(ok.any()):
            k = int(labels.max()) + 1
            pt = origin_circle_pt_torch(labels[ok], pos[ok, 0], pos[ok, 1], k)
            labels = _dissolve(labels, torch.nan_to_num(pt, nan=torch.inf) < params.min_track_pt)
    return submission(event_id, hit_ids, track_ids_torch(labels).cpu().numpy())


def device_track_formation(outputs, params) -> bool:
    """Whether :func:`tracks_from_embeddings_torch` can form the tracks of these outputs and parameters
    (a contrastive model's embedding with kNN track formation)."""
    return "embedding" in outputs and (params is None or (isinstance(params, EmbeddingTrackParams)
                                                          and params.method == "knn"))


__all__ = ["components_torch", "device_track_formation", "merge_across_clusters_torch", "origin_circle_pt_torch",
           "split_oversized_torch", "track_ids_torch", "tracks_from_embeddings_torch"]
