"""Doublet tokens: the shared transformer encoder over the doublets of a graph (the CMS Phase-2
proposal's question: doublets, not hits, as the transformer's tokens).

The graph builder of the GNN (:mod:`trackstudy.graphs`) makes the candidate doublets; each one is
a token, and the model scores it like the interaction network does::

    token       f = [x_src, x_dst, edge_attr]                       (E, 6 + 6 + 8) hit and doublet features
                h0 = W f + MLP(f)                                   the encoder's input projection plus
                                                                    ``Encoder.forward(token_embedding=MLP(f))``
    encoder     h = Encoder(h0, clusters)                           any preset, any attention backend
    score       logit = Linear(h)                                   (E,): is the doublet true?

Attention locality. A doublet sits at its midpoint in (eta, phi) (eta: mean of its hits'; phi:
circular mean). With ``cluster_size`` = 0 every graph is one cluster (full attention within an
event: right for 10-50-track events, a few hundred doublets). With ``cluster_size`` = S > 0 each
graph's doublets are cut into equal-count tiles of about S: bands of equal eta quantiles, about
sqrt(E / S) of them, each band cut along phi into chunks of about S doublets; a doublet attends
to the doublets of its tile only (block-diagonal, cost sum of tile sizes^2 ~ E S instead of E^2),
which keeps mu = 200 events (~0.5-0.8 M doublets) sparse. ``dense``, ``flex`` and ``packed`` compute
that block-diagonal attention exactly (train with ``packed`` on the CPU: flex has no CPU backward);
``lsh`` hashes the doublets' (eta, phi) instead (its buckets ignore the tiles and, in a batch of
several graphs, may hold doublets of different events).

The call signature is the interaction network's, ``forward(x, edge_index, edge_attr, edge_batch)``
-> logits (E,), and the model is an :class:`~trackstudy.models.gnn.EdgeModel` (graph builder as
buffers, ``track_params``), so the GNN's trainer, loss (:func:`~trackstudy.models.gnn.edge_loss`,
``pt_min`` / ``pt_weight`` / ``low_pt_weight`` / ``balance`` as in ``model.gnn``), track building
(connected components or walkthrough over the accepted doublets) and inference serve it
unchanged; its tracks are an ordinary hit-to-track submission.

Hit tokens (``tokens: hits``). The same encoder over the graph's hits instead of its doublets,
and each doublet scored from the encodings of its two hits::

    token       f = [x_i, dphi_i / 0.1, deta_i / 0.1]               (N, 6 + 2) hit features and the offsets
                                                                    of the hit from its tile's centre
    encoder     h = Encoder(W f + MLP(f), tiles)                    equal-count (eta, phi) tiles of the hits
    score       logit_ij = MLP([h_i, h_j, edge_attr_ij])            (E,): is the doublet true?

The offsets (clipped to +-1, i.e. +-10 in feature units) give the attention the resolution it
needs: hits of one track lie within ~0.01-0.05 rad of each other in a tile ~0.4 rad wide, which
the absolute sin / cos phi of the hit features resolve only through very large attention
weights (trained without them, the model stalled where an MLP of the doublet features alone
ends; docs/results.md, "Doublet tokens").
A mu = 200 pixel event has ~2.3 filtered doublets per hit (~9 before the filter), so hit tokens
cost the encoder less than half of doublet tokens; the graph only says which pairs are scored.
Tiles of 512 hits hold both hits of ~98% of the true doublets of pT > 0.9 GeV particles (those
across a tile border are still scored, from encodings made without each other). With
``edge_batch`` the trainer also passes ``node_batch`` (N,): the graph of each hit, so that no
tile mixes events.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from trackstudy.config import config_from_dict
from trackstudy.errors import ConfigError
from trackstudy.graphs.doublets import EDGE_FEATURES, NODE_FEATURES, NODE_UNITS
from trackstudy.graphs.edge_filter import FilterConfig
from trackstudy.graphs.module_map import GraphBuilder
from trackstudy.models.attention import AttentionContext
from trackstudy.models.encoder import Encoder, EncoderConfig
from trackstudy.models.gnn import EdgeModel, mlp

__all__ = ["DOUBLET_POSITION_FEATURES", "HIT_TOKEN_FEATURES", "TOKEN_FEATURES", "TOKEN_KINDS", "DoubletConfig", "DoubletTransformer", "doublet_clusters",
           "doublet_from_config", "doublet_position", "doublet_tokens", "encoder_features", "hit_position"]

FAMILY = "doublet"
#: Features of a doublet token: its inner hit's, its outer hit's, the doublet's.
TOKEN_FEATURES = (*(f"{n}_in" for n in NODE_FEATURES), *(f"{n}_out" for n in NODE_FEATURES), *EDGE_FEATURES)
#: What the encoder's tokens are (``model.doublet.tokens``).
TOKEN_KINDS = ("doublets", "hits")
#: Features of a hit token: the hit's and its offsets in phi and eta from its tile's centre.
HIT_TOKEN_FEATURES = (*NODE_FEATURES, "dphi_tile", "deta_tile")
#: The unit (rad, eta) of the tile offsets of a hit token, and their clip in those units.
TILE_OFFSET_UNIT, TILE_OFFSET_CLIP = 0.1, 10.0
#: Token features that say where a doublet sits across the layers and along the beam (its hits' r,
#: z, eta, layer and the doublet's dr, dz, deta, z0): what a masked doublet keeps in masked-token
#: pretraining (:mod:`trackstudy.models.masked`); the azimuth (sin/cos phi, dphi) and the
#: curvature are hidden.
DOUBLET_POSITION_FEATURES = ("r_in", "z_in", "eta_in", "layer_in", "r_out", "z_out", "eta_out", "layer_out",
                             "dr", "dz", "deta", "z0")
# columns of the node features (trackstudy.graphs.doublets.node_features: eta / 4)
_SIN, _COS, _ETA = NODE_FEATURES.index("sin_phi"), NODE_FEATURES.index("cos_phi"), NODE_FEATURES.index("eta")
_ETA_SCALE = NODE_UNITS["eta"]


@dataclass
class DoubletConfig:
    """Doublet-token hyper-parameters (the ``model.doublet`` section of a run config); the
    encoder comes from ``model.preset`` / ``model.encoder`` / ``model.backend``.

    token_hidden: width of the token MLP (and of the edge MLP with hit tokens); cluster_size:
    tokens per attention tile (0: one cluster per graph, i.e. per event); tokens: "doublets" (a
    token per doublet) or "hits" (a token per hit, doublets scored from their hits' encodings; see
    the module docstring); pt_min, pt_weight, low_pt_weight, balance: the weights of
    :func:`trackstudy.models.gnn.edge_loss` (as in ``model.gnn``).
    """

    token_hidden: int = 64
    cluster_size: int = 0
    pt_min: float = 0.9
    pt_weight: float = 3.0
    low_pt_weight: float = 1.0
    balance: bool = True
    tokens: str = "doublets"

    def __post_init__(self):
        if self.tokens not in TOKEN_KINDS:
            raise ConfigError(f"model.doublet.tokens: {self.tokens!r} unknown; choose from {', '.join(TOKEN_KINDS)}")
        if not isinstance(self.token_hidden, int) or self.token_hidden < 1:
            raise ConfigError(f"model.doublet.token_hidden: must be an integer >= 1, got {self.token_hidden!r}")
        if not isinstance(self.cluster_size, int) or self.cluster_size < 0:
            raise ConfigError(f"model.doublet.cluster_size: must be an integer >= 0 (0: one cluster per event), "
                              f"got {self.cluster_size!r}")
        for name in ("pt_min", "pt_weight", "low_pt_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.doublet.{name}: must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_dict(cls, d: dict | None) -> DoubletConfig:
        return config_from_dict(cls, d, "model.doublet")

    def to_dict(self) -> dict:
        return asdict(self)


def encoder_features(cfg: DoubletConfig) -> tuple[str, ...]:
    """The features of one encoder token of a model with ``cfg``: a doublet's or a hit's."""
    return TOKEN_FEATURES if cfg.tokens == "doublets" else HIT_TOKEN_FEATURES


def hit_position(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eta, phi) (N,) of each hit, from the node features x (N, 6)."""
    return x[:, _ETA] * _ETA_SCALE, torch.atan2(x[:, _SIN], x[:, _COS])


def doublet_position(x: torch.Tensor, edge_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(eta, phi) (E,) of each doublet's midpoint, from the node features x (N, 6)."""
    src, dst = edge_index[0], edge_index[1]
    eta = (x[src, _ETA] + x[dst, _ETA]) * (0.5 * _ETA_SCALE)
    phi = torch.atan2(x[src, _SIN] + x[dst, _SIN], x[src, _COS] + x[dst, _COS])
    return eta, phi


def doublet_tokens(x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor) -> torch.Tensor:
    """Token features (E, 20) (:data:`TOKEN_FEATURES`) of the doublets ``edge_index`` (2, E) of hits
    x (N, 6) with doublet features edge_attr (E, 8)."""
    return torch.cat([x[edge_index[0]], x[edge_index[1]], edge_attr], dim=1)


def _rank_within(group: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank (E,) of each value among those of its group (0 = smallest) and the group sizes."""
    order = torch.argsort(value, stable=True)
    order = order[torch.argsort(group[order], stable=True)]  # by group, then by value
    counts = torch.bincount(group)
    start = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(group)
    rank[order] = torch.arange(len(group), device=group.device) - start[group[order]]
    return rank, counts


def doublet_clusters(eta: torch.Tensor, phi: torch.Tensor, graph: torch.Tensor | None = None,
                     cluster_size: int = 0) -> torch.Tensor:
    """Attention cluster (E,) int64 of each doublet (or hit): equal-count (eta, phi) tiles of about
    ``cluster_size`` of them within each graph (``graph``: (E,) graph index, None: one graph);
    ``cluster_size`` 0: one cluster per graph. See the module docstring."""
    graph = torch.zeros(len(eta), dtype=torch.int64, device=eta.device) if graph is None else graph.long()
    if cluster_size <= 0 or len(eta) == 0:
        return torch.unique(graph, return_inverse=True)[1]
    rank_eta, n_graph = _rank_within(graph, eta)
    bands = torch.clamp(torch.round(torch.sqrt(n_graph.double() / cluster_size)), min=1).long()  # per graph
    band = rank_eta * bands[graph] // n_graph[graph].clamp_min(1)
    key = graph * int(bands.max()) + band
    rank_phi, n_band = _rank_within(key, phi)
    chunks = torch.clamp(torch.round(n_band.double() / cluster_size), min=1).long()  # per band
    chunk = rank_phi * chunks[key] // n_band[key].clamp_min(1)
    return torch.unique(key * int(chunks.max()) + chunk, return_inverse=True)[1]


class DoubletTransformer(EdgeModel):
    """Doublet classifier: the shared :class:`Encoder` over doublet tokens (see the module
    docstring). ``forward(x, edge_index, edge_attr, edge_batch=None)`` -> logits (E,)."""

    family = FAMILY

    def __init__(self, encoder_cfg: EncoderConfig, cfg: DoubletConfig | None = None,
                 builder: GraphBuilder | None = None, track_params=None, edge_filter=None):
        super().__init__()
        self.cfg = cfg or DoubletConfig()
        n_in = len(encoder_features(self.cfg))
        if encoder_cfg.n_features != n_in:
            raise ConfigError(f"DoubletTransformer: the encoder needs n_features={n_in} (the {self.cfg.tokens[:-1]} "
                              f"token features), got {encoder_cfg.n_features}")
        self.encoder_cfg = encoder_cfg
        self.token_mlp = mlp(n_in, self.cfg.token_hidden, encoder_cfg.d_model, 2)
        self.encoder = Encoder(encoder_cfg)
        d = encoder_cfg.d_model
        self.classifier = (nn.Linear(d, 1) if self.cfg.tokens == "doublets"
                           else mlp(2 * d + len(EDGE_FEATURES), self.cfg.token_hidden, 1, 2))
        self.set_builder(builder)
        self.set_filter(edge_filter)  # an EdgeFilter, a FilterConfig (fresh, to load into) or None
        self.track_params = track_params

    def context(self, x: torch.Tensor, edge_index: torch.Tensor, edge_batch: torch.Tensor | None = None
                ) -> AttentionContext:
        """The attention context of one sequence of all the doublets: tiles as cluster labels,
        midpoints as (eta, phi) for the ``lsh`` backend."""
        eta, phi = doublet_position(x, edge_index)
        labels = doublet_clusters(eta, phi, edge_batch, self.cfg.cluster_size)
        return AttentionContext(None, labels[None], eta[None], phi[None])

    def hit_tokens(self, x: torch.Tensor, node_batch: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, AttentionContext]:
        """Hit tokens (N, 8) (:data:`HIT_TOKEN_FEATURES`) of the hits x (N, 6) and the attention
        context of one sequence of them: tiles of the hits' (eta, phi) within each graph of
        ``node_batch`` (N,) (None: one graph)."""
        eta, phi = hit_position(x)
        labels = doublet_clusters(eta, phi, node_batch, self.cfg.cluster_size)
        n = int(labels.max()) + 1 if len(labels) else 0
        count = torch.bincount(labels, minlength=n).clamp_min(1).to(x.dtype)
        centre_eta = torch.zeros(n, dtype=x.dtype, device=x.device).index_add_(0, labels, eta) / count
        centre_phi = torch.atan2(torch.zeros(n, dtype=x.dtype, device=x.device).index_add_(0, labels, x[:, _SIN]),
                                 torch.zeros(n, dtype=x.dtype, device=x.device).index_add_(0, labels, x[:, _COS]))
        dphi = torch.remainder(phi - centre_phi[labels] + torch.pi, 2 * torch.pi) - torch.pi
        offsets = torch.stack([dphi, eta - centre_eta[labels]], dim=1) / TILE_OFFSET_UNIT
        tokens = torch.cat([x, offsets.clamp(-TILE_OFFSET_CLIP, TILE_OFFSET_CLIP)], dim=1)
        return tokens, AttentionContext(None, labels[None], eta[None], phi[None])

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor,
                edge_batch: torch.Tensor | None = None, *, backend: str | None = None,
                node_batch: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (E,) of the doublets ``edge_index`` (2, E) of hits x (N, 6) with features edge_attr
        (E, 8); ``edge_batch`` (E,): the graph of each doublet when graphs are concatenated (no
        attention across graphs); with hit tokens ``node_batch`` (N,), the graph of each hit, is
        needed then too; ``backend`` overrides the encoder's attention backend."""
        if edge_index.shape[1] == 0:
            return edge_attr.new_zeros(0)
        if self.cfg.tokens == "hits":
            if edge_batch is not None and node_batch is None:
                raise ConfigError("DoubletTransformer with hit tokens: concatenated graphs (edge_batch) need "
                                  "node_batch, the graph of each hit")
            tokens, ctx = self.hit_tokens(x, node_batch)
            h = self.encoder(tokens[None], ctx, backend=backend, token_embedding=self.token_mlp(tokens)[None])[0]
            return self.classifier(torch.cat([h[edge_index[0]], h[edge_index[1]], edge_attr], dim=1)).squeeze(1)
        tokens = doublet_tokens(x, edge_index, edge_attr)  # (E, 20)
        ctx = self.context(x, edge_index, edge_batch)
        h = self.encoder(tokens[None], ctx, backend=backend, token_embedding=self.token_mlp(tokens)[None])
        return self.classifier(h[0]).squeeze(1)

    def config_dict(self) -> dict:
        return {"family": FAMILY, "encoder": self.encoder_cfg.to_dict(), "doublet": self.cfg.to_dict(),
                "graph_sizes": self.graph_sizes(), **self.filter_config_dict()}


def doublet_from_config(cfg: dict) -> DoubletTransformer:
    """Rebuild a DoubletTransformer (fresh weights) from :meth:`DoubletTransformer.config_dict`."""
    if cfg.get("family") != FAMILY:
        raise ConfigError(f"model config: family {cfg.get('family')!r} is not {FAMILY!r}")
    edge_filter = FilterConfig.from_dict(cfg["filter"]) if cfg.get("filter") is not None else None
    return DoubletTransformer(EncoderConfig.from_dict(cfg["encoder"]), DoubletConfig.from_dict(cfg.get("doublet")),
                              edge_filter=edge_filter)
