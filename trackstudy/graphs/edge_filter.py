"""The configuration of the edge filter and the choice of its threshold (ACORN's "filter" stage).

A graph builder (windows or metric learning) keeps 99.5% of the true doublets of pT > 0.9 GeV
particles, but at mu = 200 only ~12% of its ~0.5 M candidates per event are true, and the
interaction network pays for every candidate in every iteration. The filter is a per-doublet MLP
over both hits' features and the doublet's (no message passing: one cheap pass), trained on the
training events' candidates with the GNN's weighted cross-entropy; candidates whose score is below
a threshold are dropped before the edge model sees them. The threshold is tuned on the validation
events to keep a fraction ``efficiency`` of the graph's true doublets of pT > ``model.graph.pt_min``
particles (of those the builder found: the two efficiencies multiply).

The network is :class:`trackstudy.models.gnn.EdgeFilter`; its training
:mod:`trackstudy.training.edge_filter`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from trackstudy.config import config_from_dict
from trackstudy.errors import ConfigError

__all__ = ["FilterConfig", "filter_threshold"]


@dataclass
class FilterConfig:
    """The ``model.graph.filter`` section (absent or null: no filter).

    Network: hidden (MLP width), layers (linear layers). Threshold: efficiency (fraction of the
    graph's true doublets of pT > ``model.graph.pt_min`` particles kept on the validation events),
    threshold (a fixed score in [0, 1) instead; 0: tuned for ``efficiency``). Training (its own
    budget, before the edge model's): steps, max_minutes (0: no limit), lr, batch_edges (candidates
    of one training event per step; 0: all of them).
    """

    hidden: int = 64
    layers: int = 3
    efficiency: float = 0.995
    threshold: float = 0.0
    steps: int = 20000
    max_minutes: float = 5.0
    lr: float = 2e-3
    batch_edges: int = 131072

    def __post_init__(self):
        for name in ("hidden", "layers", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.graph.filter.{name}: must be an integer >= 1, got {value!r}")
        if isinstance(self.batch_edges, bool) or not isinstance(self.batch_edges, int) or self.batch_edges < 0:
            raise ConfigError(f"model.graph.filter.batch_edges: must be an integer >= 0 (0: every candidate), "
                              f"got {self.batch_edges!r}")
        if not 0.0 < self.efficiency <= 1.0:
            raise ConfigError(f"model.graph.filter.efficiency: must be in (0, 1], got {self.efficiency!r}")
        if not 0.0 <= self.threshold < 1.0:
            raise ConfigError(f"model.graph.filter.threshold: must be in [0, 1) (0: tuned), got {self.threshold!r}")
        if self.max_minutes < 0:
            raise ConfigError(f"model.graph.filter.max_minutes: must be >= 0, got {self.max_minutes!r}")
        if self.lr <= 0:
            raise ConfigError(f"model.graph.filter.lr: must be > 0, got {self.lr!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> FilterConfig:
        return config_from_dict(cls, d, "model.graph.filter")

    def to_dict(self) -> dict:
        return asdict(self)


def filter_threshold(true_scores, efficiency: float) -> float:
    """The largest score threshold that keeps at least a fraction ``efficiency`` of ``true_scores``
    (the filter's scores of the true doublets to keep), i.e. ``score >= threshold`` holds for
    ceil(efficiency * n) of them; 0 (keep everything) when there are none."""
    s = np.sort(np.asarray(true_scores, np.float64))
    if not len(s):
        return 0.0
    n_keep = int(np.ceil(efficiency * len(s) - 1e-9))
    return float(s[len(s) - n_keep]) if n_keep > 0 else float(np.nextafter(s[-1], np.inf))
