"""``trackstudy doublets``: build the doublet graph of events and measure it against their truth.

The graph builder (pixel layer pairs, geometric windows learned from truth, optionally the module
map) comes from a trained GNN run (``--run``; a run with ``model.graph.method: metric`` brings its
metric-learning builder: embedding, radius, layer filter), a stored builder (``--builder graph.npz``), or is
fitted on the first ``--fit-events`` events of DIR (or of ``--fit DIR2``) and measured on the others.
Prints doublets and hits per event, the efficiency (true doublets of particles with pT > 0.9 GeV
that are built), the purity (built doublets that are true) and the seconds per event (wall, CPU).
"""

from __future__ import annotations

import json
import sys

from trackstudy.config import json_safe


def register(subparsers) -> None:
    p = subparsers.add_parser("doublets", help="build the doublet graph of events and measure efficiency and purity",
                              description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    p.add_argument("data", metavar="DIR", help="folder of TrackML events with truth")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--run", default=None, help="a trained GNN run: its graph builder")
    src.add_argument("--builder", default=None, metavar="NPZ", help="a stored graph builder (a run's graph.npz)")
    src.add_argument("--fit", default=None, metavar="DIR2",
                     help="fit the builder on the events of DIR2 (default: the first --fit-events events of DIR)")
    p.add_argument("--fit-events", type=int, default=5, metavar="N", help="events to fit on (default 5)")
    p.add_argument("--events", type=int, default=None, metavar="N", help="measure at most N events (default all)")
    p.add_argument("--efficiency", type=float, default=0.995,
                   help="requested true-doublet efficiency of the windows (default 0.995)")
    p.add_argument("--margin", type=float, default=1.1, help="windows widened by this factor (default 1.1)")
    p.add_argument("--module-map", action="store_true", help="also require a module pair seen when fitting")
    p.add_argument("--no-skip", dest="skip", action="store_false", help="no layer pairs that skip one layer")
    p.add_argument("--same-layer", action="store_true", help="also pairs of hits on one layer (module overlaps)")
    p.add_argument("--pt-min", type=float, default=0.9, help="pT (GeV) of the measured true doublets (default 0.9)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from itertools import islice
    from pathlib import Path

    from trackstudy.cli.evaluate import check_count
    from trackstudy.data.io import find_events, iter_events
    from trackstudy.errors import ConfigError, DataError
    from trackstudy.graphs.measure import doublet_report, summarize_report
    from trackstudy.graphs.module_map import GraphBuilder, GraphConfig
    from trackstudy.models.heads import EDGE_FAMILIES
    from trackstudy.training.checkpoint import load_run

    check_count(args.events, "--events")
    check_count(args.fit_events, "--fit-events")
    data = Path(args.data)
    if not data.is_dir():
        raise DataError(f"{data}: no such data folder (DIR)")
    n_events = len(find_events(data))
    if not n_events:
        raise DataError(f"{data}: no TrackML events (event<N>-hits.csv or .csv.gz) in this folder")
    skip_first = 0
    if args.run:
        model, _ = load_run(args.run, "cpu")
        if getattr(model, "family", None) not in EDGE_FAMILIES:
            raise ConfigError(f"--run {args.run}: a {model.family} run has no graph builder (expected a "
                              f"{' or '.join(EDGE_FAMILIES)} run)")
        builder, how = model.builder, f"run {args.run}"
    elif args.builder:
        builder, how = GraphBuilder.load(args.builder), f"builder {args.builder}"
    else:
        cfg = GraphConfig(pt_min=args.pt_min, efficiency=args.efficiency, margin=args.margin,
                          module_map=args.module_map, skip=args.skip, same_layer=args.same_layer)
        if args.fit:
            fit_dir = Path(args.fit)
            if not fit_dir.is_dir():
                raise DataError(f"{fit_dir}: no such data folder (--fit)")
        else:
            if n_events <= args.fit_events:
                raise ConfigError(f"--fit-events {args.fit_events}: {data} holds {n_events} events; leave at least "
                                  "one to measure (or fit on another folder with --fit)")
            fit_dir, skip_first = data, args.fit_events
        builder = GraphBuilder.fit(islice(iter_events(fit_dir), args.fit_events), cfg)
        how = f"fitted on {args.fit_events} events of {fit_dir}"
    events = islice(iter_events(data), skip_first, None if args.events is None else skip_first + args.events)
    summary = {"builder": how, **summarize_report(doublet_report(builder, events, pt_min=args.pt_min))}
    if args.json:
        print(json.dumps(json_safe(summary), allow_nan=False))
        return 0
    print(f"doublets of {summary['events']} events of {data} ({how}):")
    for key in ("hits_per_event", "doublets_per_event", "efficiency", "purity", "seconds", "cpu_seconds"):
        print(f"  {key:20s} {summary[key]:.4f}")
    sys.stdout.flush()
    return 0
