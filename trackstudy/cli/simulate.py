"""``trackstudy simulate``: simulated TrackML events from the built-in detector simulator."""

from __future__ import annotations

import sys

from trackstudy.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate TrackML-format events (hits, truth with weights, particles)",
        description="Simulate events of the TrackML detector: Poisson(MU) pile-up interactions (plus one "
                    "hard-scatter vertex unless --no-hard-scatter) with spectra calibrated on real TrackML "
                    "events, helix propagation through the real modules of detectors.csv, multiple "
                    "scattering, pitch smearing and noise hits. Writes event<ID>-{hits,truth,particles}.csv.gz "
                    "into OUT. The same --seed gives byte-identical files; event i depends only on "
                    "(seed, i).",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--events", type=int, default=1, metavar="N", help="number of events (default 1)")
    p.add_argument("--pileup", type=float, default=200.0, metavar="MU",
                   help="mean number of pile-up interactions, 0..1000 (default 200, like TrackML)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--pixel-only", action="store_true", help="simulate and keep only the pixel volumes 7, 8, 9 (nhits then counts pixel hits)")
    p.add_argument("--tracks", metavar="MIN:MAX", default=None,
                   help="keep a random sample of MIN..MAX particles per event with all their hits, "
                        "plus noise hits in proportion (e.g. 10:50)")
    p.add_argument("--particles-from", metavar="FILE", default=None,
                   help="re-simulate the particles of this TrackML particles file (ids kept) instead of "
                        "generating pile-up; --pileup is then ignored")
    p.add_argument("--first-event-id", type=int, default=1000, metavar="ID",
                   help="event id of the first event (default 1000)")
    p.add_argument("--no-hard-scatter", action="store_true",
                   help="pile-up only (by default one hard-scatter vertex is added, as in TrackML events)")
    p.add_argument("--noise-fraction", type=float, default=0.15, metavar="F",
                   help="noise hits / all hits of a full-detector event (default 0.15)")
    p.add_argument("--inefficiency", type=float, default=0.0, metavar="P",
                   help="probability that a module crossing leaves no hit (default 0)")
    p.add_argument("--max-turns", type=float, default=0.5, metavar="T",
                   help="transverse turns a particle is followed for; 0.5 stops at the turning point as "
                        "in the TrackML truth, larger values simulate loopers (default 0.5)")
    p.add_argument("--uncompressed", action="store_true", help="write .csv instead of .csv.gz")
    p.add_argument("--force", action="store_true", help="overwrite existing event files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from trackstudy.data.simulate import SimulationConfig, parse_tracks, simulate_dataset

    if args.events < 1:
        raise ConfigError(f"--events {args.events}: must be >= 1")
    try:
        tracks = parse_tracks(args.tracks) if args.tracks is not None else None
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("tracks=", "--tracks ", 1)) from None
    try:
        config = SimulationConfig(
            mu=args.pileup, hard_scatter=not args.no_hard_scatter, pixel_only=args.pixel_only, tracks=tracks,
            noise_fraction=args.noise_fraction, inefficiency=args.inefficiency, max_turns=args.max_turns,
        )
    except ConfigError as exc:  # name the option, not the dataclass field
        msg = str(exc)
        for field, opt in (("mu", "--pileup"), ("noise_fraction", "--noise-fraction"),
                           ("inefficiency", "--inefficiency"), ("max_turns", "--max-turns")):
            msg = msg.replace(f"SimulationConfig.{field}=", f"{opt} ")
        raise ConfigError(msg) from None
    prefixes = simulate_dataset(
        args.out, args.events, config, seed=args.seed, force=args.force, first_event_id=args.first_event_id,
        particles_from=args.particles_from, progress=not args.quiet, compress=not args.uncompressed,
    )
    print(f"wrote {len(prefixes)} event{'s' if len(prefixes) != 1 else ''} to {args.out} "
          f"({prefixes[0].name} .. {prefixes[-1].name})", file=sys.stdout)
    return 0
