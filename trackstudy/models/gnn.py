"""Edge classification: an interaction network over the doublet graph (Exa.TrkX / ACORN style).

Pure PyTorch (``index_add_`` for the aggregation; torch_geometric is not used)::

    node encoder  h = MLP(x)                                   x: (N, 6) hit features
    edge encoder  e = MLP([h_src, h_dst, edge_attr])           edge_attr: (E, 8) doublet features
    n_iterations times, with residuals:
        e = e + MLP([h_src, h_dst, e])                         edge update
        h = h + MLP([h, sum of e over incoming, sum over outgoing])   node update
    score         logit = MLP([h_src, h_dst, e])               (E,): is the doublet true?

The model also holds its graph builder (:class:`trackstudy.graphs.GraphBuilder`) as buffers and,
for graphs by metric learning (``model.graph.method: metric``), the trained hit embedding with its
radius (:class:`trackstudy.models.metric_embedding.HitEmbedding`, submodule ``embedding``), so
``model.pt`` rebuilds the graphs of new events on its own (``builder``), and its track-building parameters
(``track_params``, tuned on the validation events). With ``model.graph.filter``, an edge filter
(:class:`EdgeFilter`, submodule ``edge_filter``: an MLP over both hits' and the doublet's features
with its tuned score threshold) drops candidates before the network sees them, in training and in
``builder`` alike (:class:`FilteredGraphBuilder`). Loss: binary cross-entropy on true doublets
(consecutive hits of one particle), positives of particles with pT > ``pt_min`` weighted by
``pt_weight``, the other positives by ``low_pt_weight``, negatives by 1, all scaled so that the
positives and the negatives carry equal total weight (``balance``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from trackstudy.config import config_from_dict
from trackstudy.errors import ConfigError
from trackstudy.graphs.doublets import EDGE_FEATURES, NODE_FEATURES, edge_features, hit_geometry, node_features
from trackstudy.graphs.edge_filter import FilterConfig
from trackstudy.graphs.metric import MetricConfig
from trackstudy.graphs.module_map import GraphBuilder
from trackstudy.models.metric_embedding import HitEmbedding, MetricGraphBuilder

__all__ = ["EdgeFilter", "EdgeModel", "FilteredGraphBuilder", "GNNConfig", "InteractionNetwork", "edge_loss",
           "gnn_from_config", "mlp"]

FAMILY = "gnn"
_GRAPH_BUFFERS = ("pairs", "windows", "module_pairs", "config")


@dataclass
class GNNConfig:
    """Interaction-network hyper-parameters (the ``model.gnn`` section of a run config)."""

    hidden: int = 64
    n_iterations: int = 6
    mlp_layers: int = 2
    pt_min: float = 0.9
    pt_weight: float = 3.0
    low_pt_weight: float = 1.0
    balance: bool = True

    def __post_init__(self):
        for name in ("hidden", "n_iterations", "mlp_layers"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.gnn.{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("pt_min", "pt_weight", "low_pt_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.gnn.{name}: must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, d: dict | None) -> GNNConfig:
        return config_from_dict(cls, d, "model.gnn")

    def to_dict(self) -> dict:
        return asdict(self)


def mlp(n_in: int, hidden: int, n_out: int, layers: int, *, norm: bool = True) -> nn.Sequential:
    """Linear layers of width ``hidden`` with LayerNorm (``norm``) and SiLU between them, ``layers`` in all."""
    mods: list[nn.Module] = []
    d = n_in
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden), nn.LayerNorm(hidden), nn.SiLU()] if norm else [nn.Linear(d, hidden), nn.SiLU()]
        d = hidden
    mods.append(nn.Linear(d, n_out))
    return nn.Sequential(*mods)


def _sum_into(n: int, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return torch.zeros(n, values.shape[1], dtype=values.dtype, device=values.device).index_add_(0, index, values)


class EdgeFilter(nn.Module):
    """Per-doublet filter: MLP([x_src, x_dst, edge_attr]) -> logit (E,), no message passing (see
    :mod:`trackstudy.graphs.edge_filter`); ``threshold``: the score (probability) a candidate needs
    to be kept (a buffer, tuned after training)."""

    #: candidates scored at once by :meth:`scores` (bounds the activations' memory)
    CHUNK = 1 << 18

    def __init__(self, cfg: FilterConfig | None = None):
        super().__init__()
        self.cfg = cfg or FilterConfig()
        self.mlp = mlp(2 * len(NODE_FEATURES) + len(EDGE_FEATURES), self.cfg.hidden, 1, self.cfg.layers)
        self.register_buffer("threshold", torch.tensor(float(self.cfg.threshold), dtype=torch.float64), persistent=True)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([x[edge_index[0]], x[edge_index[1]], edge_attr], dim=1)).squeeze(1)

    @torch.no_grad()
    def scores(self, x, edge_index, edge_attr) -> np.ndarray:
        """Scores (E,) float64 in [0, 1] (numpy or tensors in, numpy out), in chunks of :attr:`CHUNK`."""
        dev = self.threshold.device
        x, ei, ea = (torch.as_tensor(a).to(dev) for a in (x, edge_index, edge_attr))
        out = [torch.sigmoid(self(x, ei[:, i:i + self.CHUNK], ea[i:i + self.CHUNK])).double().cpu()
               for i in range(0, ei.shape[1], self.CHUNK)]
        return torch.cat(out).numpy() if out else np.zeros(0)

    def keep(self, x, edge_index, edge_attr) -> np.ndarray:
        """Boolean (E,): the candidates at or above the threshold."""
        return self.scores(x, edge_index, edge_attr) >= float(self.threshold)


class FilteredGraphBuilder:
    """A graph builder (windows or metric) followed by an :class:`EdgeFilter`: the interface of
    :class:`trackstudy.graphs.GraphBuilder` (``build``, ``pairs``, ``module_pairs``, ``config``), so
    :func:`trackstudy.graphs.build_graph` and the doublet reports take it as they take the builder."""

    def __init__(self, inner, edge_filter: EdgeFilter):
        self.inner, self.edge_filter = inner, edge_filter
        self.config, self.pairs, self.module_pairs = inner.config, inner.pairs, inner.module_pairs

    def build(self, hits, geometry: dict | None = None, *, source: str = "hits") -> tuple[np.ndarray, np.ndarray]:
        g = geometry if geometry is not None else hit_geometry(hits, source=source)
        src, dst = self.inner.build(hits, g, source=source)
        keep = self.edge_filter.keep(node_features(g), np.stack([src, dst]), edge_features(g, src, dst))
        return src[keep], dst[keep]


class EdgeModel(nn.Module):
    """Base of the models that score the doublets of a graph (:data:`EDGE_FAMILIES`):
    ``forward(x, edge_index, edge_attr, edge_batch=None)`` -> logits (E,). Holds the graph builder
    as buffers (``graph_*``, saved with the weights, so ``model.pt`` rebuilds the graphs of new
    events) and the tuned track-building parameters (``track_params``)."""

    family = ""

    # ------------------------------------------------------------------ graph builder as buffers
    def set_builder(self, builder: GraphBuilder | None) -> None:
        """Keep ``builder``'s arrays as buffers (saved with the weights); None: an empty placeholder."""
        arrays = builder.to_arrays() if builder is not None else {
            "pairs": np.zeros((0, 2), np.int64), "windows": np.zeros((0, 4)), "module_pairs": np.zeros(0, np.int64),
            "config": np.zeros(7)}
        for name, a in arrays.items():
            self.register_buffer(f"graph_{name}", torch.from_numpy(np.ascontiguousarray(a)), persistent=True)

    def set_filter(self, edge_filter: EdgeFilter | FilterConfig | None) -> None:
        """Hold ``edge_filter`` (submodule ``edge_filter``; a FilterConfig: a fresh one to load
        weights into; None: no filter)."""
        self.edge_filter = EdgeFilter(edge_filter) if isinstance(edge_filter, FilterConfig) else edge_filter

    @property
    def base_builder(self) -> GraphBuilder | MetricGraphBuilder:
        """The graph builder of this run without its edge filter: the windows of the buffers or,
        with an ``embedding`` (an interaction network on metric-learning graphs), metric learning."""
        stored = GraphBuilder.from_arrays({k: getattr(self, f"graph_{k}").cpu().numpy() for k in _GRAPH_BUFFERS},
                                          source="model graph buffers")
        embedding = getattr(self, "embedding", None)
        return stored if embedding is None else MetricGraphBuilder(embedding, stored)

    @property
    def builder(self) -> GraphBuilder | MetricGraphBuilder | FilteredGraphBuilder:
        """The graph builder of this run: :attr:`base_builder`, then the edge filter where the run has one."""
        edge_filter = getattr(self, "edge_filter", None)
        return self.base_builder if edge_filter is None else FilteredGraphBuilder(self.base_builder, edge_filter)

    def filter_config_dict(self) -> dict:
        """``{"filter": its config}`` for :meth:`config_dict` when the model has an edge filter, else {}."""
        edge_filter = getattr(self, "edge_filter", None)
        return {} if edge_filter is None else {"filter": edge_filter.cfg.to_dict()}

    def graph_sizes(self) -> dict:
        return {k: list(getattr(self, f"graph_{k}").shape) for k in _GRAPH_BUFFERS}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the graph buffers' sizes depend on the fitted builder: take the stored shapes
        for k in _GRAPH_BUFFERS:
            key = f"{prefix}graph_{k}"
            if key in state_dict:
                setattr(self, f"graph_{k}", torch.empty_like(state_dict[key]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class InteractionNetwork(EdgeModel):
    """Edge classifier over doublet graphs (see the module docstring). ``forward(x, edge_index,
    edge_attr)`` -> logits (E,). ``embedding``: a :class:`HitEmbedding` for metric-learning graphs
    (None: the builder's windows)."""

    family = FAMILY

    def __init__(self, cfg: GNNConfig | None = None, builder: GraphBuilder | None = None, track_params=None,
                 embedding: HitEmbedding | MetricConfig | None = None,
                 edge_filter: EdgeFilter | FilterConfig | None = None):
        super().__init__()
        self.cfg = cfg or GNNConfig()
        h, k = self.cfg.hidden, self.cfg.mlp_layers
        nf, ef = len(NODE_FEATURES), len(EDGE_FEATURES)
        self.node_encoder = mlp(nf, h, h, k)
        self.edge_encoder = mlp(2 * h + ef, h, h, k)
        self.edge_updates = nn.ModuleList(mlp(3 * h, h, h, k) for _ in range(self.cfg.n_iterations))
        self.node_updates = nn.ModuleList(mlp(3 * h, h, h, k) for _ in range(self.cfg.n_iterations))
        self.classifier = mlp(3 * h, h, 1, k)
        self.set_builder(builder)
        self.embedding = HitEmbedding(embedding) if isinstance(embedding, MetricConfig) else embedding
        self.set_filter(edge_filter)
        self.track_params = track_params

    # ------------------------------------------------------------------ network
    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor,
                edge_batch: torch.Tensor | None = None) -> torch.Tensor:
        """``edge_batch`` (the graph of each edge in a batch of concatenated graphs) is not needed:
        message passing never crosses from one graph to another."""
        src, dst = edge_index[0], edge_index[1]
        n = x.shape[0]
        h = self.node_encoder(x)  # (N, H)
        e = self.edge_encoder(torch.cat([h[src], h[dst], edge_attr], dim=1))  # (E, H)
        for edge_mlp, node_mlp in zip(self.edge_updates, self.node_updates):
            e = e + edge_mlp(torch.cat([h[src], h[dst], e], dim=1))
            h = h + node_mlp(torch.cat([h, _sum_into(n, dst, e), _sum_into(n, src, e)], dim=1))
        return self.classifier(torch.cat([h[src], h[dst], e], dim=1)).squeeze(1)  # (E,)

    def config_dict(self) -> dict:
        """What rebuilds this network; ``metric`` (the embedding's config) only for metric-learning
        graphs, ``filter`` only with an edge filter."""
        out = {"family": FAMILY, "gnn": self.cfg.to_dict(), "graph_sizes": self.graph_sizes(), **self.filter_config_dict()}
        if self.embedding is not None:
            out["metric"] = self.embedding.cfg.to_dict()
        return out


def gnn_from_config(cfg: dict) -> InteractionNetwork:
    """Rebuild an InteractionNetwork (fresh weights) from :meth:`InteractionNetwork.config_dict`."""
    if cfg.get("family") != FAMILY:
        raise ConfigError(f"model config: family {cfg.get('family')!r} is not {FAMILY!r}")
    metric = MetricConfig.from_dict(cfg["metric"]) if cfg.get("metric") is not None else None
    edge_filter = FilterConfig.from_dict(cfg["filter"]) if cfg.get("filter") is not None else None
    return InteractionNetwork(GNNConfig.from_dict(cfg.get("gnn")), embedding=metric, edge_filter=edge_filter)


def edge_loss(logits: torch.Tensor, y: torch.Tensor, pt: torch.Tensor, cfg) -> torch.Tensor:
    """Weighted binary cross-entropy of edge logits (E,) against targets y (E,) in {0, 1}; ``pt``
    (E,): the particle pT of true edges (GeV, ignored elsewhere). ``cfg``: the weights ``pt_min``,
    ``pt_weight``, ``low_pt_weight`` and ``balance`` of a :class:`GNNConfig` (or of another edge
    model's config)."""
    pos = y > 0.5
    w = torch.where(pos, torch.where(pt > cfg.pt_min, cfg.pt_weight, cfg.low_pt_weight), 1.0).to(logits.dtype)
    if cfg.balance:
        wp, wn = w[pos].sum(), w[~pos].sum()
        if wp > 0 and wn > 0:
            w = torch.where(pos, w * (0.5 / wp), w * (0.5 / wn))
        else:
            w = w / w.sum().clamp_min(1e-12)
        return (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * w).sum()
    return (F.binary_cross_entropy_with_logits(logits, y, reduction="none") * w).sum() / w.sum().clamp_min(1e-12)


