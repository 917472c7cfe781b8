"""``trackstudy evaluate --data DIR --submission FILE.csv``: TrackML score, efficiencies, fake and
duplicate rates of a submission, per event and averaged over events."""

from __future__ import annotations

import json
import math
import sys

import pandas as pd

from trackstudy.config import json_safe
from trackstudy.data.io import parse_volumes
from trackstudy.errors import ConfigError, DataError

# trackstudy.metrics is imported in run(): every command module is imported to build the parser,
# so module-level imports here would slow down every `trackstudy` call.


def check_count(value, option: str, low: int = 1, high: int | None = None) -> None:
    """ConfigError naming ``option`` when an integer option is outside ``low .. high``."""
    if value is None:
        return
    if value < low or (high is not None and value > high):
        allowed = f"in {low} .. {high}" if high is not None else f">= {low}"
        raise ConfigError(f"{option} {value}: must be {allowed}")


def check_number(value, option: str, low: float, *, low_open: bool = False, high: float | None = None,
                 what: str = "") -> None:
    """ConfigError naming ``option`` when a float option is not finite, below ``low`` or above ``high``."""
    if value is None:
        return
    ok = math.isfinite(value) and (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        raise ConfigError(f"{option} {value}: expected a finite number {'>' if low_open else '>='} {low:g}"
                          + (f" and <= {high:g}" if high is not None else "") + (f" ({what})" if what else ""))


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


def check_result(result, args) -> None:
    """Refuse a result whose headline numbers are undefined: no hits in the selected volumes,
    no hit weights, no reconstructable particle."""
    per = result.per_event
    if "n_hits" in per.columns and int(per["n_hits"].sum()) == 0:
        raise ConfigError(f"--volumes {args.volumes}: no hit of the evaluated events is in these volumes")
    if per["trackml_score"].isna().all():
        raise DataError(f"{args.data}: the truth weights of the evaluated events sum to 0; the TrackML score "
                        f"needs hit weights (column weight of the truth files)")
    if per["dm_efficiency"].isna().all():
        raise ConfigError(f"--pt-min {args.pt_min:g} --min-hits {args.min_hits} --eta-max {args.eta_max:g}: no "
                          f"particle of the evaluated events passes these cuts, so no efficiency is defined")


def run(args) -> int:
    from trackstudy.data.io import find_events
    from trackstudy.metrics import HEADLINE_KEYS, evaluate_submission_file, read_submission

    check_count(args.events, "--events")
    check_number(args.pt_min, "--pt-min", 0.0, what="GeV")
    check_count(args.min_hits, "--min-hits")
    check_number(args.eta_max, "--eta-max", 0.0, low_open=True)
    volumes = parse_volumes(args.volumes)
    data_ids = [e for e, _ in find_events(args.data)][: args.events]
    sub = read_submission(args.submission)
    if len(sub) == 0:
        raise DataError(f"{args.submission}: the submission has no rows (expected event_id, hit_id, track_id rows)")
    result = evaluate_submission_file(sub, args.data, n_events=args.events, pt_min=args.pt_min,
                                      min_hits=args.min_hits, eta_max=args.eta_max, volumes=volumes,
                                      name=str(args.submission))
    check_result(result, args)
    evaluated = [int(e) for e in result.per_event["event_id"]]
    missing = [e for e in data_ids if e not in set(evaluated)]
    if missing:
        shown = ", ".join(str(e) for e in missing[:8]) + (", ..." if len(missing) > 8 else "")
        print(f"trackstudy evaluate: warning: {args.submission} covers {len(evaluated)} of the {len(data_ids)} "
              f"events in {args.data}; the means are over those {len(evaluated)} (missing: {shown})",
              file=sys.stderr)
    if args.json:
        out = {k: _clean(v) for k, v in result.summary.items()}
        out["data_events"] = len(data_ids)
        out["missing_events"] = missing
        out["per_event"] = [{k: _clean(v) for k, v in row.items()}
                            for row in result.per_event.to_dict(orient="records")]
        print(json.dumps(json_safe(out), default=int, allow_nan=False))
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
