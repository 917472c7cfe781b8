"""``trackstudy baseline --method dbscan-helix|truth|random|shuffle --data DIR --out FILE.csv``:
a submission from a training-free baseline."""

from __future__ import annotations

from pathlib import Path

from trackstudy.data.io import parse_volumes
from trackstudy.errors import ConfigError, DataError

# The method names are repeated here (tests check they equal trackstudy.baselines.METHODS) so
# that building the parser, which every `trackstudy` call does, does not import scikit-learn/scipy.
METHODS = ("dbscan-helix", "random", "shuffle", "truth")


def register(sub) -> None:
    p = sub.add_parser(
        "baseline",
        help="write a submission from a training-free baseline",
        description="Run a baseline track finder on the events of a dataset folder and write a submission "
                    "(event_id, hit_id, track_id). Methods: truth (perfect assignment, needs truth), random, "
                    "shuffle (truth with hits moved at --rate), dbscan-helix (DBSCAN on helix-unrolled "
                    "features; parameters in params/baselines.yaml).",
    )
    p.add_argument("--method", required=True, choices=sorted(METHODS), help="baseline method")
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder of TrackML events")
    p.add_argument("--out", required=True, metavar="FILE", help="submission CSV to write (.csv or .csv.gz)")
    p.add_argument("--params", default=None, metavar="YAML",
                   help="baseline parameter file (default params/baselines.yaml)")
    p.add_argument("--rate", type=float, default=None, help="shuffle: probability to move a hit (overrides YAML)")
    p.add_argument("--volumes", default="all", metavar="V",
                   help="run on the hits of these volumes: 'all' (default), 'pixel' or a list such as 7,8,9")
    p.add_argument("--events", type=int, default=None, metavar="N", help="at most the first N events")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed of random and shuffle (event i uses seed + i; default 0)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    import trackstudy.baselines as baselines
    from trackstudy.cli._paths import check_output_file
    from trackstudy.cli.evaluate import check_count
    from trackstudy.data.io import available_parts, find_events
    from trackstudy.metrics import write_submission  # imported here: keeps `trackstudy --help` quick

    check_count(args.events, "--events")
    check_count(args.seed, "--seed", 0, 2**32 - 1)
    if args.seed is not None and args.method not in ("random", "shuffle"):
        raise ConfigError(f"--seed has no effect with --method {args.method} (it draws nothing at random)")
    seed = 0 if args.seed is None else args.seed
    volumes = parse_volumes(args.volumes)
    params = baselines.load_baseline_params(args.params).get(args.method, {})
    if args.rate is not None:
        if args.method != "shuffle":
            raise ConfigError("--rate applies to --method shuffle only")
        if not 0.0 <= args.rate <= 1.0:
            raise ConfigError(f"--rate {args.rate}: out of range (a probability, 0 .. 1)")
        params["rate"] = args.rate
    baselines.check_params(args.method, params, where=str(args.params or baselines.BASELINES_YAML))
    out = check_output_file(Path(args.out), "--out", args.force, inputs=[args.params], input_dirs=[args.data])
    events = find_events(args.data)
    if not events:
        raise DataError(f"{args.data}: no TrackML events (event<N>-hits.csv or .csv.gz) in this folder")
    if baselines.METHODS[args.method]:
        for eid, prefix in events[: args.events]:
            if "truth" not in available_parts(prefix, eid):
                raise DataError(f"{prefix}-truth.csv[.gz]: no such file (--method {args.method} needs the truth "
                                f"of every event)")
    sub = baselines.baseline_submission(args.method, args.data, params, seed=seed, n_events=args.events,
                                        volumes=volumes, progress=sys.stderr.isatty())
    write_submission(sub, out, force=True)  # checked above: --force given, or nothing there
    out = Path(args.out)
    n_tracks = sub.groupby("event_id")["track_id"].nunique().sum()
    print(f"{out}: {sub['event_id'].nunique()} event(s), {len(sub)} hits, {n_tracks} tracks")
    return 0
