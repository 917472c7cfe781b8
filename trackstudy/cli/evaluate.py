"""``trackstudy evaluate --data DIR --submission FILE.csv``: TrackML score, efficiencies, fake and
duplicate rates of a submission, per event and averaged over events."""

from __future__ import annotations

import json
import math

import pandas as pd

from trackstudy.config import PIXEL_VOLUMES
from trackstudy.errors import ConfigError

# trackstudy.metrics is imported in run(): every command module is imported to build the parser,
# so module-level imports here would slow down every `trackstudy` call.


def parse_volumes(text: str | None):
    """``all`` / None -> None, ``pixel`` -> (7, 8, 9), ``7,8,9`` -> (7, 8, 9)."""
    if text is None or text == "all":
        return None
    if text == "pixel":
        return PIXEL_VOLUMES
    try:
        vols = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"--volumes {text!r}: expected 'all', 'pixel' or a comma-separated list of "
                          f"volume ids such as 7,8,9") from None
    if not vols:
        raise ConfigError(f"--volumes {text!r}: no volume ids given")
    return vols


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a track submission against the truth of a dataset",
        description="Evaluate a submission (CSV with event_id, hit_id, track_id; the Kaggle format) on the "
                    "events of a dataset folder with truth: TrackML score, double-majority / perfect / LHC "
                    "efficiency of reconstructable particles, fake and duplicate rate, per event and as means "
                    "over events. Hits missing from the submission (or with a negative track_id) are unassigned.",
    )
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder with hits, truth and particles")
    p.add_argument("--submission", required=True, metavar="FILE", help="submission CSV (plain or .gz)")
    p.add_argument("--pt-min", type=float, default=0.9, metavar="GEV",
                   help="reconstructable particles: pT above this (GeV; default 0.9)")
    p.add_argument("--min-hits", type=int, default=3, metavar="N",
                   help="reconstructable particles: at least N hits; tracks: candidates with >= N hits (default 3)")
    p.add_argument("--eta-max", type=float, default=4.0, metavar="ETA",
                   help="reconstructable particles: |eta| below this (default 4)")
    p.add_argument("--volumes", default="all", metavar="V",
                   help="evaluate on the hits of these volumes only: 'all' (default), 'pixel' (7,8,9) or a "
                        "comma-separated list")
    p.add_argument("--events", type=int, default=None, metavar="N", help="use at most the first N data events")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: the means over events, n_events and per_event (a list)")
    p.set_defaults(func=run)


def _clean(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def run(args) -> int:
    from trackstudy.metrics import HEADLINE_KEYS, evaluate_submission_file

    if args.events is not None and args.events < 1:
        raise ConfigError(f"--events {args.events}: must be >= 1")
    result = evaluate_submission_file(args.submission, args.data, n_events=args.events, pt_min=args.pt_min,
                                      min_hits=args.min_hits, eta_max=args.eta_max,
                                      volumes=parse_volumes(args.volumes))
    if args.json:
        out = {k: _clean(v) for k, v in result.summary.items()}
        out["per_event"] = [{k: _clean(v) for k, v in row.items()}
                            for row in result.per_event.to_dict(orient="records")]
        print(json.dumps(out, default=int))
        return 0
    cols = ["event_id", *HEADLINE_KEYS, "dm_efficiency_pt1", "n_particles", "n_tracks"]
    table = result.per_event[[c for c in cols if c in result.per_event.columns]]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4f}".format):
        print(table.to_string(index=False, na_rep="-"))
    print()
    print(f"mean over {result.summary['n_events']} event(s):")
    for key in (*HEADLINE_KEYS, "dm_efficiency_pt1", "barrel_dm_efficiency", "endcap_dm_efficiency"):
        value = result.summary.get(key, float("nan"))
        print(f"  {key:22s} {value:.4f}")
    return 0
