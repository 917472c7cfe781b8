"""The graph builder: candidate doublets of an event from layer pairs, geometric windows and,
optionally, the module map; fitted on the truth of simulated training events.

Fitting (:meth:`GraphBuilder.fit`) reads the true doublets of particles with pT > ``pt_min``:

- per layer pair (:func:`trackstudy.graphs.layers.layer_pairs`), the windows |dphi|, |z0|, |deta|
  and |curvature| (see :mod:`trackstudy.graphs.doublets`) at the quantile that keeps a fraction
  ``efficiency`` of those doublets (each of the 4 cuts loses at most (1 - efficiency) / 4), times
  ``margin``; pairs with fewer than ``min_pair_doublets`` true doublets get the windows of all pairs;
- with ``module_map``, the module map: every (inner module, outer module) pair that such a
  doublet connects (ACORN / Exa.TrkX); new events keep only candidates on a known module pair.

Building (:meth:`GraphBuilder.build`) loops over the layer pairs (about 50; vectorised inside):
the outer layer's hits sorted by phi (extended by +-2 pi for the wrap-around), a
``np.searchsorted`` window per inner hit, the candidates expanded with ``np.repeat``, then cut.

A builder is stored as arrays (``to_arrays`` / ``save`` to an ``.npz`` in the run folder) and the
GNN keeps the same arrays as buffers, so a run's ``model.pt`` rebuilds its graphs on its own.

``model.graph.method`` chooses between this builder (``windows``, the default) and metric learning
(``metric``: :mod:`trackstudy.graphs.metric`, hyper-parameters in ``model.graph.metric``); a metric
run keeps a windows-free builder of its layer pairs (:meth:`GraphBuilder.layer_pairs_only`) for
the layer filter.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trackstudy.config import config_from_dict
from trackstudy.data.io import atomic_write_bytes
from trackstudy.errors import ConfigError, DataError
from trackstudy.graphs.doublets import doublet_quantities, edge_features, hit_geometry, node_features, true_doublets
from trackstudy.graphs.edge_filter import FilterConfig
from trackstudy.graphs.layers import layer_pairs
from trackstudy.graphs.metric import METRIC_METHODS, MetricConfig

__all__ = ["WINDOWS", "GraphBuilder", "GraphConfig", "build_graph", "module_keys"]

#: The geometric windows of each layer pair, in column order (absolute values: rad, rad?, mm, 1, 1/mm).
WINDOWS = ("dphi", "z0", "deta", "curvature")


@dataclass
class GraphConfig:
    """How graphs are built (the ``model.graph`` section of a GNN run config).

    pt_min: GeV, particles whose doublets define windows and module map; efficiency: the requested
    fraction of their true doublets that survive the windows; margin: windows widened by this
    factor; module_map: also require a module pair seen in training; skip: layer pairs that skip one
    layer; same_layer: pairs of hits on one layer (module overlaps); min_pair_doublets: below this,
    a layer pair gets the windows of all pairs. method: ``windows`` (this builder) or ``metric``
    (metric learning, configured by ``metric``, a :class:`trackstudy.graphs.metric.MetricConfig`;
    there pt_min and efficiency define the positives and the tuned radius, skip and same_layer the
    layer filter; margin, module_map and min_pair_doublets are the windows' own). filter: the edge
    filter after either builder (a :class:`trackstudy.graphs.edge_filter.FilterConfig`; None: none).
    """

    pt_min: float = 0.9
    efficiency: float = 0.995
    margin: float = 1.1
    module_map: bool = False
    skip: bool = True
    same_layer: bool = False
    min_pair_doublets: int = 50
    method: str = "windows"
    metric: MetricConfig = field(default_factory=MetricConfig)
    filter: FilterConfig | None = None

    def __post_init__(self):
        if self.filter is not None:
            self.filter = FilterConfig.from_dict(self.filter)
        if self.method not in METRIC_METHODS:
            raise ConfigError(f"model.graph.method: {self.method!r} unknown; choose from {', '.join(METRIC_METHODS)}")
        self.metric = MetricConfig.from_dict(self.metric)
        if self.method == "metric" and self.module_map:
            raise ConfigError("model.graph.module_map: the module map is a filter of method windows; "
                              "method metric has layer_filter (model.graph.metric.layer_filter)")
        if not 0.0 < self.efficiency <= 1.0:
            raise ConfigError(f"model.graph.efficiency: must be in (0, 1], got {self.efficiency}")
        if self.margin < 1.0:
            raise ConfigError(f"model.graph.margin: must be >= 1, got {self.margin}")
        if self.pt_min < 0:
            raise ConfigError(f"model.graph.pt_min: must be >= 0, got {self.pt_min}")
        if self.min_pair_doublets < 1:
            raise ConfigError(f"model.graph.min_pair_doublets: must be >= 1, got {self.min_pair_doublets}")

    @classmethod
    def from_dict(cls, d: dict | None) -> GraphConfig:
        cfg = config_from_dict(cls, d, "model.graph")
        if isinstance(d, dict) and d.get("metric") and cfg.method != "metric":
            raise ConfigError(f"model.graph.metric: given but model.graph.method is {cfg.method!r} (set method: metric)")
        return cfg

    def to_dict(self) -> dict:
        """The fields as plain values; ``metric`` only with method metric, ``filter`` only when set."""
        d = asdict(self)
        if self.method != "metric":
            d.pop("metric")
        if self.filter is None:
            d.pop("filter")
        return d


def module_keys(hits: pd.DataFrame, layer: np.ndarray) -> np.ndarray:
    """A per-detector unique int64 key of each hit's module: (pixel layer index << 24) | module_id."""
    if "module_id" not in hits.columns:
        raise DataError("hits: column 'module_id' is missing (needed by the module map)")
    return (np.asarray(layer, np.int64) << 24) | hits["module_id"].to_numpy(np.int64)


def _pair_codes(keys: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return (keys[src] << 32) | keys[dst]


def _window_cut(q: dict, w: np.ndarray) -> np.ndarray:
    """Doublets inside the windows ``w`` (E, 4) or (4,) of :data:`WINDOWS`."""
    w = np.atleast_2d(w)
    return ((np.abs(q["dphi"]) <= w[:, 0]) & (np.abs(q["z0"]) <= w[:, 1]) & (np.abs(q["deta"]) <= w[:, 2])
            & (np.abs(q["curvature"]) <= w[:, 3]))


@dataclass(eq=False)
class GraphBuilder:
    """Layer pairs (P, 2), their windows (P, 4) and the sorted module-pair codes (M,) (empty: no
    module map). ``fit`` learns them from events; ``build`` applies them to the hits of a new event."""

    pairs: np.ndarray
    windows: np.ndarray
    module_pairs: np.ndarray
    config: GraphConfig

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, events: Iterable, config: GraphConfig | dict | None = None) -> GraphBuilder:
        """Learn windows (and the module map) from events: (hits, truth, particles) triples or
        Events, pixel hits only (select_volumes first)."""
        cfg = config if isinstance(config, GraphConfig) else GraphConfig.from_dict(config)
        pairs = layer_pairs(skip=cfg.skip, same_layer=cfg.same_layer)
        qs, lps, codes = [], [], []
        n_events = 0
        for ev in events:
            hits, truth, particles = (ev.hits, ev.truth, ev.particles) if hasattr(ev, "hits") else ev
            if truth is None or particles is None:
                raise DataError("GraphBuilder.fit: training events need truth and particles")
            g = hit_geometry(hits)
            td = true_doublets(hits, truth, particles, layer=g["layer"])
            td = td[td["pt"] > cfg.pt_min]
            src, dst = td["src"].to_numpy(), td["dst"].to_numpy()
            q = doublet_quantities(g, src, dst)
            qs.append(np.stack([np.abs(q[k]) for k in WINDOWS], axis=1))
            lps.append(np.stack([g["layer"][src], g["layer"][dst]], axis=1))
            if cfg.module_map:
                codes.append(_pair_codes(module_keys(hits, g["layer"]), src, dst))
            n_events += 1
        if not n_events:
            raise DataError("GraphBuilder.fit: no training events")
        q = np.concatenate(qs) if qs else np.zeros((0, 4))
        lp = np.concatenate(lps) if lps else np.zeros((0, 2), np.int64)
        if len(q) < cfg.min_pair_doublets:
            raise DataError(f"GraphBuilder.fit: only {len(q)} true doublets of particles with pT > {cfg.pt_min} "
                            f"GeV in {n_events} events (need >= {cfg.min_pair_doublets})")
        level = 1.0 - (1.0 - cfg.efficiency) / len(WINDOWS)
        overall = np.quantile(q, level, axis=0) * cfg.margin
        windows = np.tile(overall, (len(pairs), 1))
        # one pass over the ~50 layer pairs (not over hits): the doublets of each pair by a sort
        code = lp[:, 0] * 64 + lp[:, 1]
        order = np.argsort(code, kind="stable")
        sorted_code = code[order]
        for i, (a, b) in enumerate(pairs):
            lo, hi = np.searchsorted(sorted_code, [a * 64 + b, a * 64 + b + 1])
            if hi - lo >= cfg.min_pair_doublets:
                windows[i] = np.quantile(q[order[lo:hi]], level, axis=0) * cfg.margin
        module_pairs = np.unique(np.concatenate(codes)) if codes else np.zeros(0, np.int64)
        return cls(pairs, windows.astype(np.float64), module_pairs.astype(np.int64), cfg)

    @classmethod
    def layer_pairs_only(cls, config: GraphConfig | dict | None = None) -> GraphBuilder:
        """A builder of the layer pairs of ``config`` (skip, same_layer) with open windows and no
        module map: no fitting; what a metric run keeps for its layer filter."""
        cfg = config if isinstance(config, GraphConfig) else GraphConfig.from_dict(config)
        pairs = layer_pairs(skip=cfg.skip, same_layer=cfg.same_layer)
        return cls(pairs, np.full((len(pairs), len(WINDOWS)), np.inf), np.zeros(0, np.int64), cfg)

    # ------------------------------------------------------------------ building
    def build(self, hits: pd.DataFrame, geometry: dict | None = None, *, source: str = "hits"
              ) -> tuple[np.ndarray, np.ndarray]:
        """Candidate doublets (src, dst) of ``hits`` (pixel hits; rows of ``hits``), int64 each."""
        g = geometry if geometry is not None else hit_geometry(hits, source=source)
        layer, phi = g["layer"], g["phi"]
        order = np.argsort(layer, kind="stable")
        bounds = np.searchsorted(layer[order], np.arange(layer.max(initial=-1) + 2)) if len(layer) else np.zeros(1, int)
        n_layers = len(bounds) - 1
        srcs, dsts = [], []
        for (a, b), w in zip(self.pairs, self.windows):
            if a >= n_layers or b >= n_layers:
                continue
            ia, ib = order[bounds[a]:bounds[a + 1]], order[bounds[b]:bounds[b + 1]]
            if not len(ia) or not len(ib):
                continue
            ib = ib[np.argsort(phi[ib], kind="stable")]
            phi_ext = np.concatenate([phi[ib] - 2 * np.pi, phi[ib], phi[ib] + 2 * np.pi])
            idx_ext = np.concatenate([ib, ib, ib])
            lo = np.searchsorted(phi_ext, phi[ia] - w[0], side="left")
            hi = np.searchsorted(phi_ext, phi[ia] + w[0], side="right")
            n = hi - lo
            total = int(n.sum())
            if not total:
                continue
            src = np.repeat(ia, n)
            start = np.repeat(lo - (np.cumsum(n) - n), n)
            dst = idx_ext[start + np.arange(total)]
            if a == b:  # one direction per same-layer pair: outward (the farther hit from the origin last)
                d2 = g["r"] ** 2 + g["z"] ** 2
                keep = d2[src] < d2[dst]
                src, dst = src[keep], dst[keep]
            q = doublet_quantities(g, src, dst)
            keep = _window_cut(q, w)
            srcs.append(src[keep])
            dsts.append(dst[keep])
        src = np.concatenate(srcs) if srcs else np.zeros(0, np.int64)
        dst = np.concatenate(dsts) if dsts else np.zeros(0, np.int64)
        if len(self.module_pairs) and len(src):
            c = _pair_codes(module_keys(hits, layer), src, dst)
            pos = np.clip(np.searchsorted(self.module_pairs, c), 0, len(self.module_pairs) - 1)
            keep = self.module_pairs[pos] == c
            src, dst = src[keep], dst[keep]
        return src.astype(np.int64), dst.astype(np.int64)

    # ------------------------------------------------------------------ storing
    def to_arrays(self) -> dict[str, np.ndarray]:
        """The builder as plain arrays (for an .npz and for model buffers); the config as a float vector."""
        c = self.config
        cfg = np.array([c.pt_min, c.efficiency, c.margin, float(c.module_map), float(c.skip), float(c.same_layer),
                        float(c.min_pair_doublets)], dtype=np.float64)
        return {"pairs": self.pairs, "windows": self.windows, "module_pairs": self.module_pairs, "config": cfg}

    @classmethod
    def from_arrays(cls, arrays: dict, *, source: str = "graph builder") -> GraphBuilder:
        try:
            pairs = np.asarray(arrays["pairs"], np.int64).reshape(-1, 2)
            windows = np.asarray(arrays["windows"], np.float64).reshape(-1, 4)
            module_pairs = np.asarray(arrays["module_pairs"], np.int64).reshape(-1)
            c = np.asarray(arrays["config"], np.float64).reshape(-1)
            cfg = GraphConfig(pt_min=float(c[0]), efficiency=float(c[1]), margin=float(c[2]), module_map=bool(c[3]),
                              skip=bool(c[4]), same_layer=bool(c[5]), min_pair_doublets=int(c[6]))
        except (KeyError, IndexError, ValueError) as exc:
            raise DataError(f"{source}: not a graph builder (expected arrays pairs, windows, module_pairs, config; "
                            f"{type(exc).__name__}: {exc})") from None
        if len(pairs) != len(windows):
            raise DataError(f"{source}: {len(pairs)} layer pairs but {len(windows)} windows")
        return cls(pairs, windows, module_pairs, cfg)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the builder as an .npz (atomically)."""
        buf = io.BytesIO()
        np.savez(buf, **self.to_arrays())
        return atomic_write_bytes(path, buf.getvalue(), force=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> GraphBuilder:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{p}: graph builder file not found")
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise DataError(f"{p}: not a readable .npz file ({exc})") from None
        return cls.from_arrays(arrays, source=str(p))

    def window_table(self) -> pd.DataFrame:
        """The windows per layer pair as a table (for reports)."""
        return pd.DataFrame({"layer_in": self.pairs[:, 0], "layer_out": self.pairs[:, 1],
                             **{k: self.windows[:, i] for i, k in enumerate(WINDOWS)}})


def build_graph(builder: GraphBuilder, hits: pd.DataFrame, *, source: str = "hits") -> dict[str, np.ndarray]:
    """A graph of ``hits``: node features x (N, 6), edge_index (2, E), edge features (E, 8), the edge
    curvature (E,) 1/mm and the hit geometry (key ``geometry``)."""
    g = hit_geometry(hits, source=source)
    src, dst = builder.build(hits, g, source=source)
    return {"x": node_features(g), "edge_index": np.stack([src, dst]), "edge_attr": edge_features(g, src, dst),
            "curvature": doublet_quantities(g, src, dst)["curvature"], "geometry": g}
