"""``trackstudy locality``: project an event's hits, cluster them, and measure the locality.

Prints, per region (barrel, endcap, all), the reconstructible ratio, the cluster DM
efficiency, the numbers of clusters and tracks and the attention reduction, plus the block
sparsity of a 128 x 128 block mask and the time taken. With several events (several PATHs, or
a folder holding several), the numbers are event means.
"""

from __future__ import annotations

import json
import sys

from trackstudy.config import json_safe
from trackstudy.errors import ConfigError, DataError

_ROWS = [("reconstructible_ratio", "reconstructible ratio", "{:.4f}"),
         ("contained_fraction", "contained fraction", "{:.4f}"),
         ("prompt_ratio", "ratio, prompt particles", "{:.4f}"),
         ("cluster_dm_efficiency", "cluster DM efficiency", "{:.4f}"),
         ("n_tracks", "tracks (pT>0.9, >=3 hits)", "{:.0f}"),
         ("n_hits", "hits", "{:.0f}"),
         ("n_clusters", "clusters", "{:.0f}"),
         ("mean_cluster_size", "mean cluster size", "{:.1f}"),
         ("max_cluster_size", "max cluster size", "{:.0f}"),
         ("attention_reduction", "attention reduction", "{:.6f}"),
         ("block_fraction", "block fraction (128x128)", "{:.6f}")]


def add_view_frame_option(parser, note: str = "") -> None:
    """``--view-frame [both]`` on a command that runs barrel views, declared once for all of them:
    absent False, bare True (each barrel view in its own frame), ``both`` (every view in both
    frames, their candidates pooled), as ``locality.view_frame`` takes them. ``note`` ends the help."""
    parser.add_argument("--view-frame", nargs="?", const=True, default=False, choices=("both",),
                        help="with barrel views, the network sees each barrel row's z measured from its view's "
                             "vertex (locality.view_frame); --view-frame both: every view in both frames, their "
                             "candidates pooled" + (f"; {note}" if note else ""))


def register(subparsers) -> None:
    from trackstudy.locality.clustering import METHODS

    p = subparsers.add_parser(
        "locality", help="project hits onto the locality surfaces, cluster them and measure track containment",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="an event: a folder (all its events), a prefix like data/sim/event000001000, or any "
                        "file of the event (.csv or .csv.gz); several PATHs give event means")
    p.add_argument("--method", default="dbscan", choices=sorted(METHODS),
                   help="clustering method (default dbscan): " +
                        "; ".join(f"{k}: {m.summary}" for k, m in METHODS.items()))
    p.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="method parameter, repeatable: NAME=VALUE for both regions, barrel_NAME=VALUE or "
                        "endcap_NAME=VALUE for one (e.g. --param eps=3 --param endcap_eps=1.5)")
    p.add_argument("--n-events", type=int, default=None, metavar="N",
                   help="at most N events from a folder PATH (default all)")
    pix = p.add_mutually_exclusive_group()
    pix.add_argument("--pixel-only", dest="pixel_only", action="store_true", default=True,
                     help="keep only the pixel volumes 7, 8, 9 (default: the projection surfaces are "
                          "built for the pixel detector)")
    pix.add_argument("--all-volumes", dest="pixel_only", action="store_false",
                     help="cluster every hit of the event, strips included")
    p.add_argument("--vertex-scan", nargs="?", const="endcap", default=None, choices=["endcap", "barrel", "all"],
                   help="refine clusters by the vertex-z scan (reproject each cluster from its most compact "
                        "vertex z, then cluster again): endcap (the default when given without a value, as in "
                        "the seed papers), barrel or all")
    p.add_argument("--radius", type=float, default=91.0, help="barrel cylinder radius in mm (default 91)")
    p.add_argument("--z-plane", type=float, default=920.0, help="endcap plane |z| in mm (default 920)")
    p.add_argument("--no-dm", dest="dm", action="store_false",
                   help="skip the cluster double-majority efficiency")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object with barrel, endcap, all, block_sparsity and seconds")
    p.set_defaults(func=run)


def parse_params(items: list[str]) -> dict[str, str]:
    """``["eps=3", "endcap_eps=1.5"]`` -> ``{"eps": "3", "endcap_eps": "1.5"}``; ConfigError on a bad item."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE (e.g. eps=3)")
        out[key] = value
    return out


def _load_events(paths: list[str], n_events: int | None):
    from pathlib import Path

    from trackstudy.data.io import available_parts, find_events, read_event

    if n_events is not None and n_events < 1:
        raise ConfigError(f"--n-events {n_events}: must be >= 1")
    prefixes = []
    for path in paths:
        if Path(path).is_dir():
            found = find_events(path)
            if not found:
                raise DataError(f"{path}: no TrackML events (event<N>-hits.csv or .csv.gz) in this folder")
            prefixes += [prefix for _, prefix in found]
        else:
            prefixes.append(Path(path))
    if n_events is not None:
        prefixes = prefixes[:n_events]
    for prefix in prefixes:
        have = available_parts(prefix)
        parts = ("hits",) + tuple(p for p in ("truth", "particles") if p in have and
                                  {"truth", "particles"} <= set(have))
        yield read_event(prefix, parts=parts)


def run(args) -> int:
    from trackstudy.cli.evaluate import check_count, check_number
    from trackstudy.locality.clustering import resolve_params
    from trackstudy.locality.measures import mean_results, measure_locality
    from trackstudy.locality.projection import Surfaces

    check_count(args.n_events, "--n-events")
    check_number(args.radius, "--radius", 0.0, low_open=True, high=1e5, what="mm")
    check_number(args.z_plane, "--z-plane", 0.0, low_open=True, high=1e5, what="mm")
    params = parse_params(args.param)
    resolve_params(args.method, params)
    surfaces = Surfaces(radius=args.radius, z_plane=args.z_plane)
    results = [measure_locality(ev, args.method, params=params, pixel_only=args.pixel_only, surfaces=surfaces,
                                vertex_scan=args.vertex_scan or False, dm=args.dm)
               for ev in _load_events(args.paths, args.n_events)]
    summary = mean_results(results)
    if args.json:
        print(json.dumps(json_safe(summary), allow_nan=False))
        return 0
    out = sys.stdout
    ids = ", ".join(str(e) for e in summary["event_ids"][:8]) + (" ..." if len(results) > 8 else "")
    print(f"locality: method {args.method}, {len(results)} event(s) ({ids}), "
          f"{'pixel volumes 7, 8, 9' if args.pixel_only else 'all volumes'}"
          + (f", vertex-z scan ({args.vertex_scan})" if args.vertex_scan else ""), file=out)
    print(f"{'':28s}{'barrel':>12s}{'endcap':>12s}{'all':>12s}", file=out)
    for key, label, fmt in _ROWS:
        if key == "cluster_dm_efficiency" and not args.dm:
            continue
        cells = []
        for region in ("barrel", "endcap", "all"):
            v = summary[region].get(key)
            cells.append(f"{'-' if v is None else fmt.format(v):>12s}")
        print(f"{label:28s}{''.join(cells)}", file=out)
    print(f"block sparsity (128x128): {summary['block_sparsity']:.6f}; "
          f"projection + clustering + mask: {summary['seconds']:.3f} s per event", file=out)
    if summary["all"].get("n_tracks") is None:
        print("(no truth: track measures need the truth and particles files)", file=out)
    return 0
