"""``trackstudy inspect PATH [--json]``: per-event statistics of TrackML files."""

from __future__ import annotations

import json

import pandas as pd

from trackstudy.config import json_safe
from trackstudy.data.stats import inspect_path


def register(sub) -> None:
    p = sub.add_parser(
        "inspect",
        help="per-event statistics of TrackML event files",
        description="Print per-event statistics: hits, pixel hits, particles, particles with hits, noise "
                    "fraction, particles with pT > 0.9 GeV and >= 3 hits, hits per volume and layer. "
                    "PATH is a dataset folder, an event prefix (dir/event000001000) or one of an event's files.",
    )
    p.add_argument("path", metavar="PATH", help="dataset folder, event prefix or event file")
    p.add_argument("--events", type=int, default=None, metavar="N", help="inspect at most N events")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list with one object per event (hits per volume/layer included)")
    p.set_defaults(func=run)


def run(args) -> int:
    from trackstudy.cli.evaluate import check_count

    check_count(args.events, "--events")
    table, layers = inspect_path(args.path, args.events)
    if args.json:
        out = []
        for row in table.to_dict(orient="records"):
            lay = layers[layers["event_id"] == row["event_id"]]
            row = {k: (None if pd.isna(v) else v) for k, v in row.items()}
            row["hits_per_volume"] = {str(k): int(v) for k, v in lay.groupby("volume_id")["n_hits"].sum().items()}
            row["hits_per_layer"] = {f"{int(v)}:{int(lid)}": int(n)
                                     for v, lid, n in lay[["volume_id", "layer_id", "n_hits"]].itertuples(index=False)}
            out.append(row)
        print(json.dumps(json_safe(out), indent=1, default=int, allow_nan=False))
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 500):
        print(table.to_string(index=False, na_rep="-"))
        print()
        pivot = layers.pivot_table(index=["volume_id", "layer_id"], columns="event_id", values="n_hits",
                                   fill_value=0, aggfunc="sum").astype(int)
        pivot.columns = [f"event {c}" for c in pivot.columns]
        print("hits per volume and layer")
        print(pivot.to_string())
    return 0
