"""Doublet graph construction vs pile-up: doublets and hits per event, edge efficiency (true
doublets of pT > 0.9 GeV particles that are built), purity and seconds per event.

    python scripts/bench_doublets.py                                   # pile-up 0, 10, 50, 100, 200
    python scripts/bench_doublets.py --pileups 200 --events 5 --fit-events 40 --json
    python scripts/bench_doublets.py --pileups 200 --variants metric --metric-minutes 5 --metric-events 8

The builders are fitted on the first --fit-events events of the mu = 200 training data of
params/bench/gnn_mu200_cpu.yaml (simulated pixel events, seed 400) and measured on held-out
simulated pixel events (seed 20240917) at each pile-up, in three variants: geometric windows on
adjacent layer pairs, the same with pairs that skip one layer (the default of the GNN runs), and
the default plus the module map; with ``--metric-minutes``, also metric learning (``model.graph.method:
metric``): the hit embedding trained for that many minutes on the first --metric-events of the
same training events (``model.graph.metric`` defaults otherwise, ``--metric-set`` to change them),
its radius tuned on 2 validation events (seed 401) for the requested efficiency. The same numbers
for one folder: ``trackstudy doublets DIR`` (``--run`` for a trained run's builder, windows or metric).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import islice

import torch
import yaml

from trackstudy.config import DATA_DIR
from trackstudy.data.io import iter_events
from trackstudy.graphs.measure import doublet_report, summarize_report
from trackstudy.graphs.module_map import GraphBuilder, GraphConfig
from trackstudy.models.metric_embedding import MetricGraphBuilder
from trackstudy.training.data import dataset_folder
from trackstudy.training.metric_embedding import fit_embedding

VARIANTS = {"adjacent": {"skip": False}, "skip (default)": {}, "skip + module map": {"module_map": True}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pileups", default="0,10,50,100,200", help="comma-separated pile-ups (default 0,10,50,100,200)")
    p.add_argument("--events", type=int, default=3, help="held-out events per pile-up (default 3)")
    p.add_argument("--fit-events", type=int, default=20, help="mu = 200 training events to fit on (default 20)")
    p.add_argument("--efficiency", type=float, default=0.995, help="requested true-doublet efficiency")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated window variants (default all: {', '.join(VARIANTS)}; 'none': no windows)")
    p.add_argument("--metric-minutes", type=float, default=0.0,
                   help="also a metric-learning builder, its embedding trained for this many minutes (default 0: none)")
    p.add_argument("--metric-events", type=int, default=8, help="training events of the embedding (default 8)")
    p.add_argument("--metric-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a model.graph.metric field (YAML value), repeatable, e.g. k_max=64")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    pileups = [float(x) for x in args.pileups.split(",")]
    spec = {"dir": "", "n_events": 40, "pileup": 200.0, "seed": 400, "tracks": None, "pixel_only": True}
    n_fit = max(args.fit_events, args.metric_events if args.metric_minutes else 0)
    fit = list(islice(iter_events(dataset_folder(spec, DATA_DIR)), n_fit))
    names = [] if args.variants == "none" else args.variants.split(",")
    builders = {name: GraphBuilder.fit(fit[:args.fit_events], GraphConfig(efficiency=args.efficiency, **VARIANTS[name]))
                for name in names}
    info = {}
    if args.metric_minutes:
        metric = {k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in args.metric_set)}
        cfg = GraphConfig(efficiency=args.efficiency, method="metric",
                          metric={"steps": 10**6, **metric, "max_minutes": args.metric_minutes})
        val = list(iter_events(dataset_folder({**spec, "n_events": 2, "seed": 401}, DATA_DIR)))
        t0, c0 = time.perf_counter(), time.process_time()
        embedding, info = fit_embedding(fit[:args.metric_events], val, cfg, progress=not args.json)
        info.update(wall_seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)
        builders["metric"] = MetricGraphBuilder(embedding, GraphBuilder.layer_pairs_only(cfg))
        if not args.json:
            print(f"metric embedding: {info}", flush=True)
    rows = []
    for mu in pileups:
        held = {**spec, "n_events": args.events, "pileup": mu, "seed": 20240917}
        events = list(iter_events(dataset_folder(held, DATA_DIR)))
        for name, b in builders.items():
            s = summarize_report(doublet_report(b, events))
            rows.append({"pileup": mu, "variant": name, **s})
            if not args.json:
                print(f"mu {mu:5.0f}  {name:18s} hits {s['hits_per_event']:8.0f}  doublets {s['doublets_per_event']:9.0f}  "
                      f"efficiency {s['efficiency']:.4f}  purity {s['purity']:.4f}  {s['seconds']:.2f} s "
                      f"({s['cpu_seconds']:.2f} s CPU)", flush=True)
    if args.json:
        print(json.dumps({"fit_events": args.fit_events, "efficiency_requested": args.efficiency, "rows": rows,
                          "metric": info}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
