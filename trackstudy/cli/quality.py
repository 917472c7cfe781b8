"""``trackstudy quality --run runs/NAME --data DIR --val-data DIR``: fit a run's track-quality scorer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from trackstudy.cli.locality import add_view_frame_option
from trackstudy.errors import DataError


def register(sub) -> None:
    p = sub.add_parser(
        "quality",
        help="fit a run's track-quality scorer (chooses among track candidates; cuts fakes)",
        description="Run a trained model over simulated events with truth (--data; not its training or "
                    "held-out events), keep every track candidate with its features (hits, layers, helix "
                    "and line fits) and whether it is a double-majority match, fit a small perceptron "
                    "that scores candidates, and choose the score threshold on other events (--val-data) "
                    "for DM efficiency minus fake rate. Writes RUN/track_quality.npz (plain arrays) and "
                    "RUN/track_quality.json; predict, bench latency and the held-out benchmark then choose "
                    "tracks with it (their --no-quality: without).",
    )
    p.add_argument("--run", required=True, metavar="DIR", help="run directory (holds model.pt)")
    p.add_argument("--data", required=True, metavar="DIR", help="events with truth to fit the scorer on")
    p.add_argument("--val-data", required=True, metavar="DIR", help="events with truth to choose the threshold on")
    p.add_argument("--events", type=int, default=None, metavar="N", help="at most N events of --data")
    p.add_argument("--val-events", type=int, default=None, metavar="N", help="at most N events of --val-data")
    p.add_argument("--barrel-views", default=None, metavar="Z,Z,...",
                   help="barrel views (mm) to fit with, e.g. --barrel-views=-15,0,15; none: off; default: the run's")
    add_view_frame_option(p, "default: the run's")
    p.add_argument("--vary", action="append", default=[], metavar="NAME=V,V,...",
                   help="a track-formation parameter to vary, repeatable (e.g. --vary eps=0.15,0.2,0.25,0.3,0.35 "
                        "--vary min_track_pt=0): the candidates of every combination are pooled and the scorer "
                        "chooses among them (also in predict); default: the run's formation alone")
    p.add_argument("--metric", default="dm_minus_fake", choices=("dm_minus_fake", "dm_efficiency", "trackml_score"),
                   help="what the threshold maximises on --val-data (default dm_minus_fake)")
    p.add_argument("--device", default="auto", metavar="DEV", help="auto (default), cpu, cuda")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--force", action="store_true", help="replace the run's scorer if it has one")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from trackstudy.cli.evaluate import check_count
    from trackstudy.locality.views import parse_views
    from trackstudy.study.quality import fit_run_quality, parse_vary

    check_count(args.events, "--events")
    check_count(args.val_events, "--val-events")
    for option, folder in (("--data", args.data), ("--val-data", args.val_data)):
        if not Path(folder).is_dir():
            raise DataError(f"{folder}: no such data folder ({option})")
    views = None if args.barrel_views is None else parse_views(args.barrel_views)
    report = fit_run_quality(args.run, args.data, args.val_data, n_train=args.events, n_val=args.val_events,
                             barrel_views=views, view_frame=args.view_frame or None, metric=args.metric, force=args.force, device=args.device,
                             progress=not args.quiet and sys.stderr.isatty(), vary=parse_vary(args.vary))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if report["variants"]:
        print(f"candidates pooled from {len(report['variants'])} track-formation variants: "
              + "; ".join(", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in var.items())
                          for var in report["variants"]))
    print(f"fitted on {report['n_candidates_fitted']} candidates of >= 2 hits from {report['n_train_events']} "
          f"events ({100 * report['good_fraction']:.1f}% DM matches) in {report['fit_seconds']:.1f} s")
    print(f"threshold on {report['n_val_events']} events (by {report['metric']}):")
    print(f"  {'threshold':>9s} {'DM eff':>7s} {'fake':>7s} {'dup':>7s} {'score':>7s}")
    for row in report["table"]:
        mark = " <-" if row["threshold"] == report["threshold"] else ""
        print(f"  {row['threshold']:9.2f} {row['dm_efficiency']:7.4f} {row['fake_rate']:7.4f} "
              f"{row['duplicate_rate']:7.4f} {row['trackml_score']:7.4f}{mark}")
    print(f"wrote {Path(args.run) / 'track_quality.npz'}")
    return 0
