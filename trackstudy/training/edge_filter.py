"""Training of the edge filter (:class:`trackstudy.models.gnn.EdgeFilter`, configured by
``model.graph.filter``: see :mod:`trackstudy.graphs.edge_filter`), the first stage of an edge
family's run when the config asks for it.

The filter trains on the candidate doublets of the training graphs (their labels: true doublets,
the particle pT of each) with the edge model's own weighted cross-entropy
(:func:`trackstudy.models.gnn.edge_loss`), each step on ``batch_edges`` random candidates of one
random training event, AdamW with a cosine learning rate over its own budget (``steps`` or
``max_minutes``, whichever ends first: :func:`trackstudy.training.stage.train_stage`). Its threshold is then tuned on the validation graphs
(:func:`trackstudy.graphs.edge_filter.filter_threshold`), and :func:`prune_sample` drops the
candidates below it from the graphs the edge model trains on.
"""

from __future__ import annotations

import numpy as np
import torch

from trackstudy.errors import DataError
from trackstudy.graphs.edge_filter import FilterConfig, filter_threshold
from trackstudy.models.gnn import EdgeFilter, edge_loss
from trackstudy.training.stage import train_stage

__all__ = ["fit_filter", "prune_sample"]


def _true_pt(sample: dict, pt_min: float) -> np.ndarray:
    return ((sample["y"] > 0.5) & (sample["pt"] > pt_min)).numpy()


def prune_sample(sample: dict, keep: np.ndarray, pt_min: float) -> dict:
    """The graph sample (:func:`trackstudy.training.gnn.graph_sample`) with the candidates ``keep``
    (E,) bool only; its stats follow (the true doublets of pT > ``pt_min`` particles it still holds)."""
    keep = np.asarray(keep, bool)
    k = torch.from_numpy(keep)
    lost_pt = int((_true_pt(sample, pt_min) & ~keep).sum())
    stats = dict(sample["stats"])
    stats.update(n_edges=int(keep.sum()), n_true=int((sample["y"][k] > 0.5).sum()),
                 n_found_pt=stats["n_found_pt"] - lost_pt)
    return {**sample, "edge_index": sample["edge_index"][:, k], "edge_attr": sample["edge_attr"][k],
            "y": sample["y"][k], "pt": sample["pt"][k], "curvature": np.asarray(sample["curvature"])[keep],
            "stats": stats}


def fit_filter(train: list[dict], val: list[dict], cfg: FilterConfig, loss_cfg, *, pt_min: float, seed: int = 0,
               device="cpu", progress: bool = False) -> tuple[EdgeFilter, dict]:
    """Train an edge filter on the graph samples ``train``, tune its threshold on ``val`` (module
    docstring); ``loss_cfg``: the edge model's loss weights (pt_min, pt_weight, low_pt_weight,
    balance); ``pt_min``: the particles whose true doublets the threshold keeps (``model.graph.pt_min``).
    Returns the filter (eval mode, threshold set, on the CPU) and a record: steps, seconds, the
    threshold, and the validation candidates and efficiency before and after it."""
    if not train or not sum(int(s["y"].sum()) for s in train):
        raise DataError("edge filter: the training graphs hold no true doublets (model.graph.filter)")
    model = EdgeFilter(cfg).to(device)

    def loss_fn(rng: np.random.Generator) -> torch.Tensor:
        s = train[int(rng.integers(len(train)))]
        n_edges = s["edge_index"].shape[1]
        if cfg.batch_edges and n_edges > cfg.batch_edges:
            idx = torch.from_numpy(np.sort(rng.choice(n_edges, cfg.batch_edges, replace=False)))
            ei, ea, y, pt = s["edge_index"][:, idx], s["edge_attr"][idx], s["y"][idx], s["pt"][idx]
        else:
            ei, ea, y, pt = s["edge_index"], s["edge_attr"], s["y"], s["pt"]
        return edge_loss(model(s["x"].to(device), ei.to(device), ea.to(device)), y.to(device), pt.to(device), loss_cfg)

    record = train_stage(model, loss_fn, steps=cfg.steps, max_minutes=cfg.max_minutes, lr=cfg.lr, seed=seed,
                         desc="edge filter", progress=progress)
    model = model.cpu().eval()
    scores = [model.scores(s["x"], s["edge_index"], s["edge_attr"]) for s in val]
    true_pt = [_true_pt(s, pt_min) for s in val]
    if cfg.threshold == 0:
        model.threshold.fill_(filter_threshold(np.concatenate([sc[t] for sc, t in zip(scores, true_pt)])
                                               if val else np.zeros(0), cfg.efficiency))
    thr = float(model.threshold)
    kept = [sc >= thr for sc in scores]
    n_true = sum(int(t.sum()) for t in true_pt)
    n_true_all = sum(int((s["y"] > 0.5).sum()) for s in val)
    n_before, n_after = sum(len(sc) for sc in scores), sum(int(k.sum()) for k in kept)
    info = {**record, "threshold": thr, "tuned": cfg.threshold == 0,
            "val_edges_before": n_before / max(len(val), 1), "val_edges_after": n_after / max(len(val), 1),
            "val_efficiency_pt": (sum(int((k & t).sum()) for k, t in zip(kept, true_pt)) / n_true) if n_true else None,
            "val_purity_before": n_true_all / max(n_before, 1),
            "val_purity_after": sum(int((k & (s["y"] > 0.5).numpy()).sum()) for k, s in zip(kept, val)) / max(n_after, 1)}
    return model, info
