"""Doublet graph construction vs pile-up: doublets and hits per event, edge efficiency (true
doublets of pT > 0.9 GeV particles that are built), purity and seconds per event.

    python scripts/bench_doublets.py                                   # pile-up 0, 10, 50, 100, 200
    python scripts/bench_doublets.py --pileups 200 --events 5 --fit-events 40 --json

The builders are fitted on the first --fit-events events of the mu = 200 training data of
params/bench/gnn_mu200_cpu.yaml (simulated pixel events, seed 400) and measured on held-out
simulated pixel events (seed 20240917) at each pile-up, in three variants: geometric windows on
adjacent layer pairs, the same with pairs that skip one layer (the default of the GNN runs), and
the default plus the module map. The same numbers for one folder: ``trackstudy doublets DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
from itertools import islice

from trackstudy.config import DATA_DIR
from trackstudy.data.io import iter_events
from trackstudy.graphs.measure import doublet_report, summarize_report
from trackstudy.graphs.module_map import GraphBuilder, GraphConfig
from trackstudy.training.data import dataset_folder

VARIANTS = {"adjacent": {"skip": False}, "skip (default)": {}, "skip + module map": {"module_map": True}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--pileups", default="0,10,50,100,200", help="comma-separated pile-ups (default 0,10,50,100,200)")
    p.add_argument("--events", type=int, default=3, help="held-out events per pile-up (default 3)")
    p.add_argument("--fit-events", type=int, default=20, help="mu = 200 training events to fit on (default 20)")
    p.add_argument("--efficiency", type=float, default=0.995, help="requested true-doublet efficiency")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    pileups = [float(x) for x in args.pileups.split(",")]
    spec = {"dir": "", "n_events": 40, "pileup": 200.0, "seed": 400, "tracks": None, "pixel_only": True}
    fit = list(islice(iter_events(dataset_folder(spec, DATA_DIR)), args.fit_events))
    builders = {name: GraphBuilder.fit(fit, GraphConfig(efficiency=args.efficiency, **v)) for name, v in VARIANTS.items()}
    rows = []
    for mu in pileups:
        held = {**spec, "n_events": args.events, "pileup": mu, "seed": 20240917}
        events = list(iter_events(dataset_folder(held, DATA_DIR)))
        for name, b in builders.items():
            s = summarize_report(doublet_report(b, events))
            rows.append({"pileup": mu, "variant": name, **s})
            if not args.json:
                print(f"mu {mu:5.0f}  {name:18s} hits {s['hits_per_event']:8.0f}  doublets {s['doublets_per_event']:9.0f}  "
                      f"efficiency {s['efficiency']:.4f}  purity {s['purity']:.4f}  {s['seconds']:.2f} s", flush=True)
    if args.json:
        print(json.dumps({"fit_events": args.fit_events, "efficiency_requested": args.efficiency, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
