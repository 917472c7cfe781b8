"""``trackstudy simulate``: simulated TrackML events from the built-in detector simulator."""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

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
    p.add_argument("--pileup", type=float, default=None, metavar="MU",
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
    g = p.add_argument_group(
        "cuts applied after simulation (trackstudy.data.cuts, in this order: volumes, pT, one hit per layer, "
        "particle fraction, noise; particles without kept hits dropped, nhits recounted, weights recomputed)")
    g.add_argument("--like", metavar="SET", default=None,
                   help="cut every event like a real set of data/real: pix1gev (volumes 7,8,9, pT >= 1 GeV, the "
                        "innermost hit per particle and layer, no noise), barrel20 (volumes 8,13,17, double hits "
                        "dropped, 20%% of the particles and of the noise) or mini (5%% of the particles and of the "
                        "noise); the options below override its settings")
    g.add_argument("--volumes", metavar="LIST", default=None,
                   help="keep the hits of these volume ids, e.g. 8,13,17 (only pixel volumes: --pixel-only implied)")
    g.add_argument("--min-pt", metavar="GEV", default=None, help="keep the hits of particles with pT >= GEV")
    g.add_argument("--one-hit-per-layer", metavar="RULE", nargs="?", const="innermost", default=None,
                   help="one hit per particle per (volume, layer): innermost (default: smallest radius, the "
                        "heptrkx rule) or first (lowest hit id, the hepqpr-qallse rule)")
    g.add_argument("--drop-double-hits", action="store_true",
                   help="the same as --one-hit-per-layer first (hepqpr-qallse's wording)")
    g.add_argument("--particle-fraction", metavar="F", default=None,
                   help="keep all the hits of a random floor(F * n) of the n particles with hits, 0 < F <= 1")
    g.add_argument("--noise-keep", metavar="F", default=None,
                   help="keep a random floor(F * n) of the n noise hits, 0 <= F <= 1")
    g.add_argument("--no-noise", action="store_true", help="drop every noise hit (--noise-keep 0)")
    p.add_argument("--uncompressed", action="store_true", help="write .csv instead of .csv.gz")
    p.add_argument("--force", action="store_true", help="overwrite existing event files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _number(value: str, option: str, expected: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{option} {value!r}: expected {expected}") from None
    if not math.isfinite(x):
        raise ConfigError(f"{option} {value!r}: expected {expected}")
    return x


def cuts_from_args(args):
    """The EventCuts of the cut options (None when none is given); bad values name their option."""
    from trackstudy.data.cuts import LAYER_RULES, LIKE, EventCuts
    from trackstudy.data.io import parse_volumes

    given: dict = {}
    if args.volumes is not None:
        if not str(args.volumes).strip():
            raise ConfigError("--volumes '': expected 'all', 'pixel' or comma-separated volume ids, e.g. 8,13,17")
        vols = parse_volumes(str(args.volumes).replace(" ", ""))
        if vols is not None:
            given["volumes"] = vols
    if args.min_pt is not None:
        x = _number(args.min_pt, "--min-pt", "a transverse momentum >= 0 in GeV, e.g. 1.0")
        if x < 0:
            raise ConfigError(f"--min-pt {args.min_pt!r}: expected a transverse momentum >= 0 in GeV, e.g. 1.0")
        given["min_pt"] = x
    if args.one_hit_per_layer is not None:
        if args.one_hit_per_layer not in LAYER_RULES:
            raise ConfigError(f"--one-hit-per-layer {args.one_hit_per_layer!r}: expected "
                              f"{' or '.join(LAYER_RULES)}")
        given["one_hit_per_layer"] = args.one_hit_per_layer
    if args.drop_double_hits:
        if given.get("one_hit_per_layer", "first") != "first":
            raise ConfigError("--drop-double-hits keeps the first hit id; it contradicts --one-hit-per-layer "
                              f"{given['one_hit_per_layer']} (give one of the two)")
        given["one_hit_per_layer"] = "first"
    if args.particle_fraction is not None:
        f = _number(args.particle_fraction, "--particle-fraction", "a fraction 0 < F <= 1, e.g. 0.2")
        if not 0.0 < f <= 1.0:
            raise ConfigError(f"--particle-fraction {args.particle_fraction!r}: expected a fraction 0 < F <= 1, "
                              f"e.g. 0.2")
        given["particle_fraction"] = f
    if args.noise_keep is not None:
        if args.no_noise:
            raise ConfigError("--no-noise and --noise-keep contradict each other (give one of the two)")
        f = _number(args.noise_keep, "--noise-keep", "a fraction 0 <= F <= 1, e.g. 0.2")
        if not 0.0 <= f <= 1.0:
            raise ConfigError(f"--noise-keep {args.noise_keep!r}: expected a fraction 0 <= F <= 1, e.g. 0.2")
        given["noise"] = f
    if args.no_noise:
        given["noise"] = False
    if args.like is not None and args.like not in LIKE:
        raise ConfigError(f"--like {args.like!r}: expected one of {', '.join(LIKE)}")
    if args.like is None and not given:
        return None
    base = LIKE[args.like] if args.like is not None else EventCuts()
    return replace(base, **given)


#: The most events one command simulates, and the largest event id (9 digits, the Kaggle names).
MAX_EVENTS = 100_000
MAX_EVENT_ID = 999_999_999


def check_args(args) -> None:
    """Counts, ids, seed and paths, before any work (ConfigError naming the option)."""
    from trackstudy.cli._paths import check_writable_folder
    from trackstudy.cli.evaluate import check_count

    check_count(args.events, "--events", 1, MAX_EVENTS)
    check_count(args.seed, "--seed", 0, 2**63 - 1)
    check_count(args.first_event_id, "--first-event-id", 0, MAX_EVENT_ID - args.events + 1)
    if args.particles_from is not None:
        if args.pileup is not None:
            raise ConfigError("--pileup has no effect with --particles-from (the particles come from the file); "
                              "give one of the two")
        if args.no_hard_scatter:
            raise ConfigError("--no-hard-scatter has no effect with --particles-from (the particles come from the "
                              "file); give one of the two")
        given = Path(args.particles_from).resolve()
        m = re.match(r"^event(\d+)-", given.name)
        if (m and given.parent == Path(args.out).resolve()
                and args.first_event_id <= int(m.group(1)) < args.first_event_id + args.events):
            raise ConfigError(f"--particles-from {args.particles_from}: is an input of this command; the events "
                              f"simulated into --out {args.out} would replace it (refused, even with --force)")
    out = Path(args.out)
    if os.path.lexists(out) and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    check_writable_folder(out, "--out")


def run(args) -> int:
    from trackstudy.config import PIXEL_VOLUMES
    from trackstudy.data.simulate import SimulationConfig, parse_tracks, simulate_dataset

    check_args(args)
    cuts = cuts_from_args(args)
    # only pixel volumes kept: simulating the strips would be wasted work
    pixel_only = args.pixel_only or (cuts is not None and cuts.volumes is not None
                                     and set(cuts.volumes) <= set(PIXEL_VOLUMES))
    if args.events < 1:
        raise ConfigError(f"--events {args.events}: must be >= 1")
    try:
        tracks = parse_tracks(args.tracks) if args.tracks is not None else None
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("tracks=", "--tracks ", 1)) from None
    try:
        config = SimulationConfig(
            pileup=200.0 if args.pileup is None else args.pileup, hard_scatter=not args.no_hard_scatter, pixel_only=pixel_only, tracks=tracks,
            noise_fraction=args.noise_fraction, inefficiency=args.inefficiency, max_turns=args.max_turns,
        )
    except ConfigError as exc:  # name the option, not the dataclass field
        msg = str(exc)
        for field, opt in (("pileup", "--pileup"), ("noise_fraction", "--noise-fraction"),
                           ("inefficiency", "--inefficiency"), ("max_turns", "--max-turns")):
            msg = msg.replace(f"SimulationConfig.{field}=", f"{opt} ")
        raise ConfigError(msg) from None
    prefixes = simulate_dataset(
        args.out, args.events, config, seed=args.seed, force=args.force, first_event_id=args.first_event_id,
        particles_from=args.particles_from, progress=not args.quiet and sys.stderr.isatty(), compress=not args.uncompressed, cuts=cuts,
    )
    print(f"wrote {len(prefixes)} event{'s' if len(prefixes) != 1 else ''} to {args.out} "
          f"({prefixes[0].name} .. {prefixes[-1].name})", file=sys.stdout)
    return 0
