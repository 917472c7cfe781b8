"""Metric learning for graph construction: the hit-embedding MLP, its hinge loss and the graph
builder that uses it (the Exa.TrkX "embedding" stage; the array side is :mod:`trackstudy.graphs.metric`).

::

    embedding   u = normalize(MLP(x))                 x: (N, 6) hit features (NODE_FEATURES), u: (N, D), |u| = 1
    loss        pos_weight * mean over positive pairs of d^2
                + mean over negative pairs of max(0, margin - d)^2       d = |u_a - u_b|

Positive pairs: the true doublets of particles with pT > ``model.graph.pt_min``; negative pairs:
random pairs of hits of different particles and hard negatives, the nearest hits of a hit in the
current embedding that belong to another particle (both drawn by
:mod:`trackstudy.training.metric_embedding`). The mean of each term keeps positives and negatives
at equal weight however many of each a batch holds.

:class:`MetricGraphBuilder` has the interface of :class:`trackstudy.graphs.GraphBuilder`
(``build(hits, geometry) -> (src, dst)``, ``pairs``, ``config``), so :func:`trackstudy.graphs.build_graph`,
:func:`trackstudy.graphs.measure.doublet_report` and the GNN use either. The network and the radius it
was tuned to are a module (:class:`HitEmbedding`, the radius a buffer), which the GNN holds as its
``embedding``: a run's ``model.pt`` rebuilds metric graphs with no other file.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F

from trackstudy.graphs.doublets import NODE_FEATURES, hit_geometry, node_features
from trackstudy.graphs.metric import MetricConfig, orient_pairs, radius_pairs
from trackstudy.graphs.module_map import GraphBuilder, GraphConfig

__all__ = ["HitEmbedding", "MetricGraphBuilder", "hinge_loss"]


class HitEmbedding(nn.Module):
    """Hit features (N, 6) -> unit vectors (N, emb_dim); ``radius``: the graph radius (a buffer,
    set after training when the config's radius is 0)."""

    def __init__(self, cfg: MetricConfig | None = None):
        super().__init__()
        self.cfg = cfg or MetricConfig()
        c = self.cfg
        mods: list[nn.Module] = []
        d = len(NODE_FEATURES)
        for _ in range(c.layers - 1):
            mods += [nn.Linear(d, c.hidden), nn.LayerNorm(c.hidden), nn.SiLU()]
            d = c.hidden
        mods.append(nn.Linear(d, c.emb_dim))
        self.mlp = nn.Sequential(*mods)
        self.register_buffer("radius", torch.tensor(float(c.radius), dtype=torch.float64), persistent=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.mlp(x), dim=1)  # (N, D)

    @torch.no_grad()
    def embed(self, x: np.ndarray) -> np.ndarray:
        """Embeddings (N, D) float64 of features ``x`` (N, 6) (numpy in, numpy out, no gradients)."""
        dev = self.radius.device
        return self(torch.as_tensor(np.asarray(x, np.float32), device=dev)).double().cpu().numpy()


def hinge_loss(emb: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, margin: float,
               pos_weight: float = 1.0) -> torch.Tensor:
    """The metric-learning loss (module docstring) of embeddings ``emb`` (N, D) over positive pairs
    ``pos`` (P, 2) and negative pairs ``neg`` (Q, 2) of row indices; a term without pairs is 0."""
    zero = emb.sum() * 0.0  # keeps the graph (and the dtype/device) when a term is empty
    loss_pos = zero
    if len(pos):
        loss_pos = ((emb[pos[:, 0]] - emb[pos[:, 1]]) ** 2).sum(dim=1).mean() * pos_weight
    loss_neg = zero
    if len(neg):
        # sqrt of a clamped square: no infinite gradient for two identical embeddings
        d = ((emb[neg[:, 0]] - emb[neg[:, 1]]) ** 2).sum(dim=1).clamp_min(1e-12).sqrt()
        loss_neg = F.relu(margin - d).pow(2).mean()
    return loss_pos + loss_neg


class MetricGraphBuilder:
    """Candidate doublets from the embedding: pairs within ``embedding.radius`` among the ``k_max``
    nearest, oriented and (``layer_filter``) kept on the layer pairs of ``layers`` (a
    :meth:`GraphBuilder.layer_pairs_only`)."""

    def __init__(self, embedding: HitEmbedding, layers: GraphBuilder, config: GraphConfig | None = None):
        self.embedding, self.layers = embedding, layers
        base = config if config is not None else layers.config
        self.config = replace(base, method="metric", metric=embedding.cfg, module_map=False)
        self.pairs = layers.pairs
        self.module_pairs = np.zeros(0, np.int64)

    @property
    def radius(self) -> float:
        return float(self.embedding.radius)

    def embed(self, hits: pd.DataFrame, geometry: dict | None = None, *, source: str = "hits") -> np.ndarray:
        """Embeddings (N, D) of ``hits`` (pixel hits)."""
        g = geometry if geometry is not None else hit_geometry(hits, source=source)
        return self.embedding.embed(node_features(g))

    def build(self, hits: pd.DataFrame, geometry: dict | None = None, *, source: str = "hits"
              ) -> tuple[np.ndarray, np.ndarray]:
        """Candidate doublets (src, dst) of ``hits`` (rows), int64 each."""
        g = geometry if geometry is not None else hit_geometry(hits, source=source)
        i, j = radius_pairs(self.embed(hits, g), self.radius, self.embedding.cfg.k_max)
        pairs = self.pairs if self.embedding.cfg.layer_filter else None
        return orient_pairs(i, j, g["layer"], g["r"] ** 2 + g["z"] ** 2, pairs)
