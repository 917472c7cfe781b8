"""Parameter scans and method comparisons for the locality clustering.

:func:`scan` evaluates a clustering method over a grid of parameters on one or more events
(projection done once per event) and returns one row per parameter combination and region;
:func:`best` picks, per region, the combination with the highest reconstructible ratio whose
attention reduction stays within a budget. :func:`compare_methods` builds the seed slides'
comparison table (ratio, DM efficiency, clusters, tracks, reduction per method and region).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from trackstudy.data.io import select_volumes
from trackstudy.errors import ConfigError
from trackstudy.locality.clustering import cluster, resolve_params
from trackstudy.locality.measures import (
    MIN_HITS,
    PT_MIN,
    attention_reduction,
    block_fraction,
    cluster_sizes,
    measure_locality,
    particle_containment,
)
from trackstudy.locality.projection import Surfaces, project_hits

#: Parameter grids for :func:`scan` around each method's defaults (notebook 02).
DEFAULT_GRIDS: dict[str, dict[str, list]] = {
    "dbscan": {"barrel_eps": [2.5, 3.5, 4.5], "endcap_eps": [2.0, 3.0, 4.0]},
    "window": {"barrel_width_u": [12.0, 18.0, 24.0], "endcap_width_u": [8.0, 12.0, 16.0]},
    "density": {"barrel_delta_min": [8.0, 12.0, 16.0], "endcap_delta_min": [1.5, 2.0, 3.0]},
    "grid": {"barrel_cell_u": [10.0, 16.0, 24.0], "endcap_cell_u": [10.0, 16.0, 24.0]},
}

TABLE_COLUMNS = ["reconstructible_ratio", "cluster_dm_efficiency", "n_clusters", "n_tracks", "attention_reduction"]


def _events(event_or_events) -> list:
    if isinstance(event_or_events, (list, tuple)):
        events = list(event_or_events)
    else:
        events = [event_or_events]
    if not events:
        raise ConfigError("no events given")
    return events


def scan(event, method: str, grid: dict[str, list], *, max_reduction: float = 0.01, pixel_only: bool = True,
         surfaces: Surfaces | None = None, base_params: dict | None = None, vertex_scan: bool | str = False,
         pt_min: float = PT_MIN, min_hits: int = MIN_HITS, progress: bool = True) -> pd.DataFrame:
    """Evaluate ``method`` on every combination of ``grid`` (name -> list of values).

    event: an Event with truth, or a list of them (measures are averaged over events).
    grid names follow :func:`trackstudy.locality.clustering.cluster` (``eps`` for both regions,
    ``barrel_eps`` for one). Returns one row per combination and region (barrel, endcap) with
    the parameter values, reconstructible_ratio, contained_fraction, prompt_ratio, attention_reduction,
    block_fraction, n_clusters, n_tracks, seconds (clustering, mean per event) and
    ``feasible`` (attention_reduction <= max_reduction). DM efficiency is left out (use
    :func:`compare_methods` or :func:`trackstudy.locality.measures.measure_locality`).
    """
    if not grid:
        raise ConfigError("scan: empty parameter grid")
    names = list(grid)
    values = [list(grid[n]) if isinstance(grid[n], (list, tuple, np.ndarray)) else [grid[n]] for n in names]
    if any(len(v) == 0 for v in values):
        raise ConfigError(f"scan: parameter {names[[len(v) for v in values].index(0)]!r} has no values")
    combos = list(itertools.product(*values))
    base = dict(base_params or {})
    for combo in combos:  # fail before any work on a bad name or value
        resolve_params(method, {**base, **dict(zip(names, combo))})
    prepared = []
    for ev in _events(event):
        if ev.truth is None or ev.particles is None:
            raise ConfigError(f"scan: event {ev.event_id} has no truth/particles (the ratio needs them)")
        ev = select_volumes(ev) if pixel_only else ev
        proj = project_hits(ev.hits, surfaces=surfaces)
        pid = ev.truth.set_index("hit_id").loc[ev.hits["hit_id"].to_numpy(), "particle_id"].to_numpy()
        prepared.append((ev, proj, pid))
    rows = []
    for combo in tqdm(combos, desc=f"scan {method}", disable=not progress):
        params = {**base, **dict(zip(names, combo))}
        acc: dict[str, list] = {}
        for ev, proj, pid in prepared:
            t0 = time.perf_counter()
            labels = cluster(proj, method, vertex_scan=vertex_scan, **params)
            seconds = time.perf_counter() - t0
            table = particle_containment(labels, pid, ev.particles, surface=proj.surface, pt_min=pt_min,
                                         min_hits=min_hits)
            for region in ("barrel", "endcap"):
                mask = proj.region_mask(region)
                sel = table["selected"] & (table["region"] == region)
                lab = labels[mask]
                m = {"reconstructible_ratio": table.loc[sel, "reconstructible"].mean() if sel.any() else np.nan,
                     "contained_fraction": table.loc[sel, "contained"].mean() if sel.any() else np.nan,
                     "prompt_ratio": (table.loc[sel & table["prompt"], "reconstructible"].mean()
                                      if "prompt" in table.columns and (sel & table["prompt"]).any() else np.nan),
                     "attention_reduction": attention_reduction(lab) if len(lab) else np.nan,
                     "block_fraction": block_fraction(lab) if len(lab) else np.nan,
                     "n_clusters": len(cluster_sizes(lab)), "n_tracks": int(sel.sum()), "seconds": seconds}
                for k, v in m.items():
                    acc.setdefault((region, k), []).append(v)
        for region in ("barrel", "endcap"):
            row = {**dict(zip(names, combo)), "region": region}
            for k in ("reconstructible_ratio", "contained_fraction", "prompt_ratio", "attention_reduction",
                      "block_fraction", "n_clusters", "n_tracks", "seconds"):
                row[k] = float(np.nanmean(acc[(region, k)])) if np.isfinite(acc[(region, k)]).any() else np.nan
            rows.append(row)
    df = pd.DataFrame(rows)
    df["feasible"] = df["attention_reduction"] <= max_reduction
    df.attrs.update(method=method, max_reduction=max_reduction, grid_names=names)
    return df


def best(scan_df: pd.DataFrame, region: str | None = None, *, max_reduction: float | None = None) -> pd.DataFrame:
    """The best row per region of a :func:`scan` table: highest reconstructible ratio among rows with
    attention_reduction <= max_reduction (default: the scan's), ties to the smaller reduction.

    Returns one row per region (or just ``region``); a region with no feasible row is absent.
    """
    if max_reduction is None:
        max_reduction = scan_df.attrs.get("max_reduction", 0.01)
    df = scan_df[scan_df["attention_reduction"] <= max_reduction]
    if region is not None:
        df = df[df["region"] == region]
    df = df.sort_values(["region", "reconstructible_ratio", "attention_reduction"], ascending=[True, False, True])
    return df.groupby("region", sort=True).head(1).reset_index(drop=True)


def best_params(scan_df: pd.DataFrame, *, max_reduction: float | None = None) -> dict:
    """The best parameters of a scan as one ``cluster()`` keyword dict with ``barrel_`` / ``endcap_`` prefixes."""
    names = scan_df.attrs.get("grid_names") or [c for c in scan_df.columns if c not in (
        "region", "reconstructible_ratio", "contained_fraction", "prompt_ratio", "attention_reduction",
        "block_fraction",
        "n_clusters", "n_tracks", "seconds", "feasible")]
    out = {}
    for _, row in best(scan_df, max_reduction=max_reduction).iterrows():
        for name in names:
            bare = name.split("_", 1)[1] if name.startswith(("barrel_", "endcap_")) else name
            if name.startswith(("barrel_", "endcap_")) and not name.startswith(row["region"] + "_"):
                continue
            value = row[name]
            out[f"{row['region']}_{bare}"] = value.item() if hasattr(value, "item") else value
    return out


def compare_methods(events, methods: dict[str, dict] | Sequence[str] = ("dbscan", "window", "density", "grid"), *,
                    pixel_only: bool = True, surfaces: Surfaces | None = None, dm: bool = True,
                    vertex_scan: bool | str = False, progress: bool = True) -> pd.DataFrame:
    """The comparison table: one row per method and region (barrel, endcap, all), event means.

    methods: names (default parameters) or {name: params}. Columns: method, region, n_hits,
    reconstructible_ratio, contained_fraction, prompt_ratio, cluster_dm_efficiency, n_clusters, n_tracks,
    attention_reduction, block_fraction, mean_cluster_size, max_cluster_size, seconds.
    Events without truth give NaN track columns (sizes and reductions only).
    """
    if not isinstance(methods, dict):
        methods = {m: {} for m in methods}
    evs = _events(events)
    rows = []
    for method, params in tqdm(list(methods.items()), desc="methods", disable=not progress):
        results = [measure_locality(ev, method, params=params, pixel_only=pixel_only, surfaces=surfaces,
                                    vertex_scan=vertex_scan,
                                    dm=dm and ev.truth is not None and ev.particles is not None) for ev in evs]
        for region in ("barrel", "endcap", "all"):
            row = {"method": method, "region": region}
            for k in ("n_hits", "reconstructible_ratio", "contained_fraction", "prompt_ratio", "cluster_dm_efficiency",
                      "n_clusters",
                      "n_tracks", "attention_reduction", "block_fraction", "mean_cluster_size", "max_cluster_size"):
                vals = [r.regions[region].get(k) for r in results]
                vals = [np.nan if v is None else float(v) for v in vals]
                row[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
            row["seconds"] = float(np.mean([r.seconds for r in results]))
            rows.append(row)
    return pd.DataFrame(rows)
