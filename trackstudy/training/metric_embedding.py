"""Stage 1 of a GNN run with ``model.graph.method: metric``: training the hit embedding.

:func:`fit_embedding` trains a :class:`trackstudy.models.metric_embedding.HitEmbedding` on the
training events within its own budget (``model.graph.metric.steps`` and ``max_minutes``; the GNN's
``train.max_minutes`` starts after it), then sets its radius. One step:

1. ``batch_events`` training events drawn with ``numpy.random.default_rng([seed, step])``;
2. per event: the embeddings of all its hits; positives = its true doublets of particles with
   pT > ``model.graph.pt_min``; negatives = ``n_random`` random pairs per hit of different particles
   (noise differs from every hit) and the hard negatives: for ``hard_queries`` random hits (0: all),
   their ``hard_k`` nearest hits in the current embedding that belong to another particle;
3. the hinge loss (:func:`trackstudy.models.metric_embedding.hinge_loss`) averaged over the events,
   AdamW, the learning rate on a cosine from ``lr`` to 0 over the steps or the minutes, whichever
   runs out first.

Radius (``radius: 0``): the ``model.graph.efficiency`` quantile of the embedding distances of the
validation events' true doublets with pT > ``pt_min`` (:func:`trackstudy.graphs.metric.tune_radius`).
The stage runs once: the GNN run stores the embedding in its checkpoints (the first one written
right after this stage) and ``model.pt``, and a resumed run reads it back instead of training it
again; an interrupt inside the stage leaves no checkpoint, and ``--resume`` starts it over.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

from trackstudy.data.io import select_volumes
from trackstudy.errors import DataError
from trackstudy.graphs.doublets import hit_geometry, node_features, true_doublets
from trackstudy.graphs.metric import sample_negatives, tune_radius
from trackstudy.graphs.module_map import GraphConfig
from trackstudy.models.metric_embedding import HitEmbedding, hinge_loss
from trackstudy.training.stage import train_stage

__all__ = ["embedding_sample", "fit_embedding", "hard_negatives"]


def embedding_sample(event, pt_min: float) -> dict:
    """What the embedding trains on for one event: x (N, 6) float32 tensor, pid (N,) int64 particle
    of each hit (0: noise), pos (P, 2) int64 true doublets of particles with pT > ``pt_min``."""
    ev = select_volumes(event)
    if ev.truth is None or ev.particles is None:
        raise DataError(f"event {ev.event_id}: metric learning trains on events with truth and particles")
    g = hit_geometry(ev.hits, source=f"event {ev.event_id} hits")
    td = true_doublets(ev.hits, ev.truth, ev.particles, layer=g["layer"], source=f"event {ev.event_id}")
    td = td[td["pt"] > pt_min]
    pid = (ev.hits[["hit_id"]].merge(ev.truth[["hit_id", "particle_id"]], on="hit_id", how="left")["particle_id"]
           .fillna(0).to_numpy(np.int64))
    return {"x": torch.from_numpy(node_features(g)), "pid": pid,
            "pos": np.stack([td["src"].to_numpy(np.int64), td["dst"].to_numpy(np.int64)], axis=1)}


def hard_negatives(emb: np.ndarray, pid: np.ndarray, k: int, n_queries: int, rng: np.random.Generator) -> np.ndarray:
    """(M, 2) pairs (query hit, one of its ``k`` nearest hits in ``emb``) of different particles
    (noise differs from every hit); ``n_queries`` random query hits (0 or >= N: all)."""
    n = len(emb)
    if n < 2 or k <= 0:
        return np.zeros((0, 2), np.int64)
    q = np.arange(n) if not n_queries or n_queries >= n else rng.choice(n, n_queries, replace=False)
    kk = min(k + 1, n)
    nbr = NearestNeighbors(n_neighbors=kk).fit(emb).kneighbors(emb[q], return_distance=False)
    a, b = np.repeat(q, kk), nbr.reshape(-1)
    keep = (a != b) & ((pid[a] != pid[b]) | (pid[a] == 0))
    return np.stack([a[keep], b[keep]], axis=1).astype(np.int64)


def _distances(model: HitEmbedding, samples: list[dict]) -> np.ndarray:
    out = []
    for s in samples:
        e = model.embed(s["x"].numpy())
        out.append(np.linalg.norm(e[s["pos"][:, 0]] - e[s["pos"][:, 1]], axis=1))
    return np.concatenate(out) if out else np.zeros(0)


def fit_embedding(train_events: list, val_events: list, config: GraphConfig, *, seed: int = 0, device="cpu",
                  progress: bool = False) -> tuple[HitEmbedding, dict]:
    """Train the embedding of ``config.metric`` (module docstring); returns it (eval mode, radius
    set) and a record: steps, seconds, final loss, radius, the validation positives' distance quantiles."""
    c = config.metric
    train = [embedding_sample(e, config.pt_min) for e in train_events]
    val = [embedding_sample(e, config.pt_min) for e in val_events]
    if not sum(len(s["pos"]) for s in train):
        raise DataError(f"metric learning: the training events hold no true doublets of particles with pT > "
                        f"{config.pt_min} GeV (model.graph.pt_min)")
    model = HitEmbedding(c).to(device)

    def loss_fn(rng: np.random.Generator) -> torch.Tensor:
        idx = rng.choice(len(train), size=min(c.batch_events, len(train)), replace=False)
        loss = 0.0
        for i in idx:
            s = train[i]
            emb = model(s["x"].to(device))
            neg = [sample_negatives(s["pid"], c.n_random * len(s["pid"]), rng),
                   hard_negatives(emb.detach().double().cpu().numpy(), s["pid"], c.hard_k, c.hard_queries, rng)]
            loss = loss + hinge_loss(emb, torch.from_numpy(s["pos"]).to(device),
                                     torch.from_numpy(np.concatenate(neg)).to(device), c.margin, c.pos_weight)
        return loss / len(idx)

    record = train_stage(model, loss_fn, steps=c.steps, max_minutes=c.max_minutes, lr=c.lr, seed=seed,
                         desc="embedding", progress=progress)
    d = _distances(model, val)
    if c.radius == 0:
        model.radius.fill_(tune_radius(d, config.efficiency))
    radius = float(model.radius)
    info = {**record, "radius": radius,
            "tuned": c.radius == 0, "val_positives": int(len(d)),
            "val_within_radius": float((d <= radius).mean()) if len(d) else None,
            "val_distance_quantiles": {f"q{q}": float(np.quantile(d, q / 100)) for q in (50, 90, 99)} if len(d) else {}}
    return model, info
