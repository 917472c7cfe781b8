"""Benchmark of the locality step: the methods' comparison table and their speed.

Prints, for each clustering method with its default parameters, per region (barrel, endcap,
all): reconstructible ratio, contained fraction, cluster DM efficiency, clusters, tracks,
attention reduction and 128x128 block fraction, as event means; then the time of projection +
clustering + block-mask summary for one event (best of --repeat), which is what the targets
are about (mu = 200 pixel event: fastest method <= 0.5 s, DBSCAN <= 2 s on one core).

Run it pinned to one core for the timings:

    taskset -c 0 .venv/bin/python scripts/bench_locality.py --events 3 --pileup 200
    taskset -c 0 .venv/bin/python scripts/bench_locality.py --data data/sim --events 5
    .venv/bin/python scripts/bench_locality.py --real      # the real reduced event and event 1001's hits

Events are simulated in memory (trackstudy.data.simulate, pixel volumes only, seeded) unless
--data names a folder of TrackML events.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd


def _events(args):
    from trackstudy.data.io import iter_events

    if args.data:
        return list(iter_events(args.data, n_events=args.events))
    from trackstudy.data.simulate import SimulationConfig, event_rngs, simulate_event

    config = SimulationConfig(pileup=args.pileup, pixel_only=True)
    return [simulate_event(config, rng, event_id=1000 + i) for i, rng in enumerate(event_rngs(args.seed, args.events))]


def _timing(event, method: str, repeat: int, vertex_scan) -> float:
    from trackstudy.data.io import select_volumes
    from trackstudy.locality.clustering import cluster
    from trackstudy.locality.measures import block_fraction
    from trackstudy.locality.projection import project_hits

    hits = select_volumes(event).hits
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        labels = cluster(project_hits(hits), method, vertex_scan=vertex_scan)
        block_fraction(labels)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="folder of TrackML events (default: simulate in memory)")
    p.add_argument("--events", type=int, default=3, help="events to average over (default 3)")
    p.add_argument("--pileup", type=float, default=200.0, help="simulated pile-up mu (default 200)")
    p.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")
    p.add_argument("--methods", default="dbscan,window,density,grid", help="comma-separated methods")
    p.add_argument("--repeat", type=int, default=3, help="timing repeats, best kept (default 3)")
    p.add_argument("--vertex-scan", nargs="?", const="endcap", default=None, choices=["endcap", "barrel", "all"],
                   help="refine clusters by the vertex-z scan (endcap when given without a value)")
    p.add_argument("--real", action="store_true",
                   help="instead: the real reduced event (truth) and the real full-size hits of event 1001")
    args = p.parse_args(argv)

    from trackstudy.config import REAL_DATA_DIR
    from trackstudy.data.io import read_event, select_volumes
    from trackstudy.locality.scan import compare_methods

    pd.set_option("display.width", 200, "display.max_columns", 20)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.real:
        sets = {"real reduced event (mini)": [read_event(REAL_DATA_DIR / "mini")],
                "real full-size event 1001 (hits only)": [read_event(REAL_DATA_DIR / "full" / "event000001001",
                                                                     parts=("hits",))]}
    else:
        t0 = time.perf_counter()
        events = _events(args)
        what = args.data or f"simulated mu={args.pileup:g} pixel events (seed {args.seed})"
        print(f"{len(events)} {what}, made/read in {time.perf_counter() - t0:.1f} s")
        sets = {what: events}
    for name, events in sets.items():
        n_hits = np.mean([len(select_volumes(e).hits) for e in events])
        print(f"\n== {name}: {len(events)} event(s), {n_hits:.0f} pixel hits per event"
              + (f", vertex-z scan ({args.vertex_scan})" if args.vertex_scan else ""))
        table = compare_methods(events, methods, vertex_scan=args.vertex_scan or False, progress=False)
        cols = ["method", "region", "reconstructible_ratio", "contained_fraction", "prompt_ratio",
                "cluster_dm_efficiency",
                "n_clusters", "n_tracks", "attention_reduction", "block_fraction", "max_cluster_size"]
        print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.6g}"))
        print(f"\ntiming (projection + clustering + block-mask summary, best of {args.repeat}, one event "
              f"of {len(select_volumes(events[0]).hits)} hits):")
        for method in methods:
            _timing(events[0], method, 1, args.vertex_scan or False)  # warm-up (imports, caches)
            print(f"  {method:8s} {_timing(events[0], method, args.repeat, args.vertex_scan or False):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
