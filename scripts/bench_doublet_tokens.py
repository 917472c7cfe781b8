"""Hit tokens vs doublet tokens: tokens per event, attention cost and CPU seconds per event.

    python scripts/bench_doublet_tokens.py --run runs/doublet_10-50 --data data/sim/FOLDER --events 20
    python scripts/bench_doublet_tokens.py --run runs/doublet_10-50 --data data/sim/MU200_FOLDER --events 1 \\
        --cluster-size 256 --no-hit-model

Per event: the pixel hits (the tokens of the hit-token models), the doublets that the run's graph
builder makes (the tokens of the doublet model), the attention pairs of each (query-key pairs the
attention computes: the sum over attention clusters of their size squared; the hit-token model
attends over the whole event, locality.method none, as in contrastive_10-50.yaml) and the density
(pairs / tokens^2). Timed on one thread in CPU seconds of this thread (``time.thread_time``: other
jobs on a shared machine do not count): one training step's forward + backward of one event and
one forward without autograd, for the run's doublet model and for an untrained hit-token model of
the configuration ``--hit-config`` (weights do not change the cost). ``--cluster-size`` overrides
the doublet model's tile size (0: one cluster per event).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import islice

import numpy as np
import torch

from trackstudy.data.io import iter_events, select_volumes
from trackstudy.graphs.module_map import build_graph
from trackstudy.models.doublet import doublet_clusters, doublet_position
from trackstudy.models.encoder import EncoderConfig
from trackstudy.models.features import FeatureConfig, hit_features
from trackstudy.models.heads import build_model
from trackstudy.training import load_run, resolve_config


def _cpu(fn) -> float:
    t0 = time.thread_time()
    fn()
    return time.thread_time() - t0


def _step(model, *args, **kwargs):
    """Forward + backward of a sum of the outputs (the cost of a training step without the optimiser)."""
    out = model(*args, **kwargs)
    loss = sum(v.float().sum() for v in out.values()) if isinstance(out, dict) else out.sum()
    loss.backward()
    model.zero_grad(set_to_none=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a doublet run (its model and graph builder)")
    p.add_argument("--data", required=True, help="folder of TrackML events")
    p.add_argument("--events", type=int, default=20, help="events to measure (default 20)")
    p.add_argument("--hit-config", default="params/bench/contrastive_10-50.yaml",
                   help="run config of the hit-token model (preset, encoder, features)")
    p.add_argument("--cluster-size", type=int, default=None, help="doublet tiles of this size (default: the run's)")
    p.add_argument("--no-hit-model", action="store_true", help="do not time the hit-token model (full events)")
    p.add_argument("--no-train-step", action="store_true", help="time the forward passes only")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model, _ = load_run(args.run, "cpu")
    if args.cluster_size is not None:
        model.cfg.cluster_size = args.cluster_size
    hc = resolve_config(args.hit_config)["model"]
    feats = FeatureConfig(**hc["features"])
    torch.manual_seed(0)
    hit_model = build_model(hc["family"], EncoderConfig.preset(hc["preset"], n_features=feats.n_features,
                                                               attention=hc["backend"], **hc["encoder"]),
                            feature_cfg=feats, **hc["head"])
    rows = []
    for ev in islice(iter_events(args.data, parts=("hits",)), args.events):
        hits = select_volumes(ev).hits
        g = build_graph(model.builder, hits, source=f"event {ev.event_id}")
        x, ei, ea = (torch.from_numpy(g[k]) for k in ("x", "edge_index", "edge_attr"))
        labels = doublet_clusters(*doublet_position(x, ei), None, model.cfg.cluster_size)
        sizes = torch.bincount(labels).double()
        n_hits, n_dbl = len(hits), int(ei.shape[1])
        row = {"event_id": int(ev.event_id), "hits": n_hits, "doublets": n_dbl, "hit_pairs": float(n_hits) ** 2,
               "doublet_pairs": float((sizes ** 2).sum()), "doublet_clusters": len(sizes),
               "doublet_density": float((sizes ** 2).sum()) / max(n_dbl, 1) ** 2}
        model.train()
        if not args.no_train_step:
            row["doublet_step_cpu_s"] = _cpu(lambda: _step(model, x, ei, ea))
        with torch.no_grad():
            model.eval()
            row["doublet_forward_cpu_s"] = _cpu(lambda: model(x, ei, ea))
        if not args.no_hit_model:
            xh = torch.from_numpy(hit_features(hits, feats))[None]
            hit_model.train()
            if not args.no_train_step:
                row["hit_step_cpu_s"] = _cpu(lambda: _step(hit_model, xh))
            with torch.no_grad():
                hit_model.eval()
                row["hit_forward_cpu_s"] = _cpu(lambda: hit_model(xh))
        rows.append(row)
        if not args.json:
            print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    keys = [k for k in rows[0] if k != "event_id"]
    summary = {"events": len(rows), "cluster_size": model.cfg.cluster_size, "backend": model.encoder_cfg.attention,
               "mean": {k: float(np.mean([r[k] for r in rows])) for k in keys},
               "median": {k: float(np.median([r[k] for r in rows])) for k in keys}}
    print(json.dumps(summary if not args.json else {"rows": rows, **summary}, indent=None if args.json else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
