"""``trackstudy predict --run runs/NAME --data DIR --out FILE.csv``: a Kaggle submission from a trained run."""

from __future__ import annotations

import sys
from pathlib import Path

from trackstudy.cli.locality import add_view_frame_option
from trackstudy.errors import ConfigError, DataError


def register(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="track candidates of every event in a folder, from a trained run (Kaggle submission)",
        description="Run a trained model (runs/NAME from `trackstudy train`) over the events of DIR (hits "
                    "only are needed) with the run's locality clustering and tuned track formation, and "
                    "write a Kaggle-format submission (event_id, hit_id, track_id; gzipped if FILE ends in "
                    ".gz). Prints the mean seconds per event of each stage: clustering, features, masks, "
                    "encoder, track formation. Score it with `trackstudy evaluate --data DIR --submission FILE`.",
    )
    p.add_argument("--run", required=True, metavar="DIR", help="run directory (holds model.pt)")
    p.add_argument("--data", required=True, metavar="DIR", help="folder of TrackML events (hits files)")
    p.add_argument("--out", required=True, metavar="FILE", help="submission CSV to write")
    p.add_argument("--events", type=int, default=None, metavar="N", help="only the first N events")
    p.add_argument("--device", default="auto", metavar="DEV", help="auto (default), cpu, cuda, cuda:1, mps")
    p.add_argument("--backend", default=None, metavar="NAME",
                   help="attention backend override (dense, flex, packed, lsh); default: the run's")
    p.add_argument("--locality", default=None, metavar="METHOD",
                   help="locality clustering override (none, dbscan, window, density, grid); default: the run's")
    p.add_argument("--barrel-views", default=None, metavar="Z,Z,...",
                   help="project the barrel from these vertex z values (mm), e.g. --barrel-views=-15,-7.5,0,7.5,15 "
                        "(the = keeps the leading minus): "
                        "every barrel hit runs once per view and a track is taken from the view nearest its "
                        "vertex (tracks from displaced vertices stay whole); none: off; default: the run's")
    add_view_frame_option(p, "default: the run's")
    p.add_argument("--max-dense-hits", type=int, default=None, metavar="N",
                   help="a run with full attention (locality none) runs events of more than N hits (default "
                        "10000) on the sparse path (grid clustering, packed backend) with a notice; naming "
                        "--locality or --backend keeps what they say")
    p.add_argument("--no-quality", action="store_true",
                   help="keep the track candidates as formed, without the run's track-quality scorer "
                        "(track_quality.npz of `trackstudy quality`)")
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def notice_once(prog: str):
    """A ``notify`` callback that prints the first notice as one line on stderr (the rest are alike)."""
    shown = []

    def notify(message: str) -> None:
        if not shown:
            shown.append(message)
            print(f"{prog}: notice: {message}", file=sys.stderr)

    return notify


def run(args) -> int:
    import trackstudy.inference as inference
    from trackstudy.cli._paths import check_output_file
    from trackstudy.cli.evaluate import check_count
    from trackstudy.data.io import find_events
    from trackstudy.inference import STAGES
    from trackstudy.locality.clustering import METHODS
    from trackstudy.locality.views import parse_views
    from trackstudy.metrics import write_submission
    from trackstudy.models.attention import get_backend
    from trackstudy.postprocessing.gnn_tracks import GNN_STAGES
    from trackstudy.training.checkpoint import load_run

    check_count(args.events, "--events")
    check_count(args.max_dense_hits, "--max-dense-hits")
    if args.backend is not None:
        get_backend(args.backend, "--backend")
    if args.locality is not None and args.locality not in ("none", *METHODS):
        raise ConfigError(f"--locality {args.locality!r}: choose from none, {', '.join(METHODS)}")
    views = None if args.barrel_views is None else parse_views(args.barrel_views)
    data = Path(args.data)
    if not data.is_dir():
        raise DataError(f"{data}: no such data folder (--data)")
    out = check_output_file(Path(args.out), "--out", args.force, input_dirs=[data],
                            inputs=[p for p in Path(args.run).glob("*") if p.is_file()]
                            if Path(args.run).is_dir() else [])
    if not find_events(data):
        raise DataError(f"{data}: no TrackML events (event<N>-hits.csv or .csv.gz) in this folder")
    model, run_config = load_run(args.run, args.device)
    pixel_only = bool(((run_config.get("data") or {}).get("train") or {}).get("pixel_only", False))
    locality = run_config.get("locality")
    if args.locality is not None:
        locality = {"method": args.locality, "params": {}, "vertex_scan": False}
    if views is not None:
        locality = inference.check_locality({**(locality or {"method": "none"}), "barrel_views": views})
    if args.view_frame:
        locality = inference.check_locality({**(locality or {"method": "none"}), "view_frame": args.view_frame})
    explicit = args.locality is not None or args.backend is not None
    sub, timings = inference.predict_events(
        model, data, locality=locality, pixel_only=pixel_only, backend=args.backend, n_events=args.events,
        progress=not args.quiet and sys.stderr.isatty(), notify=notice_once("trackstudy predict"),
        max_dense_hits=None if explicit else (args.max_dense_hits or inference.DENSE_MAX_HITS),
        quality=not args.no_quality)
    write_submission(sub, out, force=True)  # checked above: --force given, or nothing there
    out = Path(args.out)
    n = len(timings)
    print(f"{n} event{'s' if n != 1 else ''}, {int(timings['n_hits'].sum())} hits through the model "
          f"({model.family}, backend {args.backend or getattr(getattr(model, 'encoder_cfg', None), 'attention', 'graph')}, "
          f"{next(model.parameters()).device})"
          + (f"; barrel views from z = {', '.join(f'{v:g}' for v in locality['barrel_views'])} mm: "
             f"{int(timings['n_rows'].sum())} rows"
             + (", each in its view's frame" if inference.check_locality(locality)["view_frame"] else "")
             if "n_rows" in timings.columns else "")
          + ("; tracks chosen by the run's track-quality scorer (threshold "
             f"{model.track_quality.threshold:g})" if getattr(model, "track_quality", None) is not None
             and not args.no_quality else ""))
    print("seconds per event (mean):")
    ran = GNN_STAGES if set(GNN_STAGES) <= set(timings.columns) else STAGES  # an edge model has its own stages
    for stage in (*ran, "total"):
        print(f"  {stage:20s} {timings[stage].mean():.4f}")
    print(f"wrote {out}", file=sys.stdout)
    return 0
