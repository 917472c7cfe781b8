"""Per-event statistics: the numbers ``trackstudy inspect`` and notebook 01 show."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from trackstudy.config import PIXEL_VOLUMES, REAL_DATA_DIR
from trackstudy.data.io import Event, available_parts, find_events, read_event, read_table, resolve_event
from trackstudy.errors import DataError
from trackstudy.kinematics import pt as pt_of


def particle_hit_counts(event: Event, volumes: Sequence[int] | None = None) -> pd.Series:
    """Hits per particle (index particle_id, noise excluded), from the truth when read,
    else from the particles' ``nhits`` column (all volumes only)."""
    if event.truth is not None:
        truth = event.truth
        if volumes is not None:
            in_sel = event.hits.set_index("hit_id")["volume_id"].isin(list(volumes))
            truth = truth.loc[in_sel.reindex(truth["hit_id"]).to_numpy()]
        pid = truth.loc[truth["particle_id"] != 0, "particle_id"]
        counts = pid.value_counts()
        if event.particles is not None:
            counts = counts.reindex(event.particles["particle_id"], fill_value=0)
        return counts.rename("nhits")
    if event.particles is not None and volumes is None:
        return event.particles.set_index("particle_id")["nhits"]
    raise DataError(f"event {event.event_id}: per-particle hit counts need the truth file")


def event_summary(event: Event, pt_min: float = 0.9, min_hits: int = 3) -> dict:
    """Headline numbers of one event (None where the needed file was not read).

    n_reconstructable: particles with pT > pt_min (GeV) and >= min_hits hits in the whole
    detector; n_reconstructable_pixel: the same with >= min_hits hits in the pixel volumes.
    """
    hits = event.hits
    vol = hits["volume_id"].to_numpy()
    out: dict = {
        "event_id": int(event.event_id),
        "n_hits": int(len(hits)),
        "n_pixel_hits": int(np.isin(vol, PIXEL_VOLUMES).sum()),
        "n_particles": None,
        "n_particles_with_hits": None,
        "noise_fraction": None,
        "n_pt_above": None,
        "n_reconstructable": None,
        "n_reconstructable_pixel": None,
    }
    if event.truth is not None:
        out["noise_fraction"] = float((event.truth["particle_id"].to_numpy() == 0).mean())
    if event.particles is not None:
        parts = event.particles
        out["n_particles"] = int(len(parts))
        pts = pt_of(parts["px"].to_numpy(np.float64), parts["py"].to_numpy(np.float64))
        high = pts > pt_min
        out["n_pt_above"] = int(high.sum())
        counts = particle_hit_counts(event).reindex(parts["particle_id"], fill_value=0).to_numpy()
        out["n_particles_with_hits"] = int((counts > 0).sum())
        out["n_reconstructable"] = int((high & (counts >= min_hits)).sum())
        if event.truth is not None:
            pix = particle_hit_counts(event, PIXEL_VOLUMES).reindex(parts["particle_id"], fill_value=0).to_numpy()
            out["n_reconstructable_pixel"] = int((high & (pix >= min_hits)).sum())
    return out


def hits_per_layer(event: Event) -> pd.DataFrame:
    """Hit counts per (volume_id, layer_id), with the layers' mean radius and |z| (mm)."""
    h = event.hits
    g = h.assign(r=np.hypot(h["x"].to_numpy(np.float64), h["y"].to_numpy(np.float64)),
                 abs_z=np.abs(h["z"].to_numpy(np.float64))).groupby(["volume_id", "layer_id"])
    return pd.DataFrame({"n_hits": g.size(), "mean_r": g["r"].mean(), "mean_abs_z": g["abs_z"].mean()}).reset_index()


def inspect_path(path: str | os.PathLike, n_events: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Summaries of every event under ``path`` (a folder, prefix or file).

    Returns (per-event table, hits per volume/layer table with an event_id column).
    Reads whichever of truth/particles exist: hits-only data (no truth) is fine.
    """
    if os.path.isdir(path):
        events = find_events(path)
        if not events:
            raise DataError(f"{path}: no TrackML events (event<N>-hits.csv or .csv.gz) in this folder")
    else:
        events = [resolve_event(path)]
    if n_events is not None:
        events = events[: int(n_events)]
    rows, layers = [], []
    for eid, prefix in events:
        parts = [p for p in available_parts(prefix, eid) if p != "cells"]
        event = read_event(prefix, eid, parts=parts)
        rows.append(event_summary(event))
        layers.append(hits_per_layer(event).assign(event_id=eid))
    return pd.DataFrame(rows), pd.concat(layers, ignore_index=True)


def real_reference(trackml_dir: str | os.PathLike | None = None) -> tuple[dict, pd.DataFrame]:
    """Statistics of the real TrackML samples to compare a simulation against.

    From ``full/``: particles per event, with pT > 0.9 GeV, and of those with >= 3 hits
    (means over the particles files), hits and pixel hits and hits per layer (the hits files);
    from ``mini/``: the noise fraction (the only real truth shipped). Returns (numbers, hits per layer).
    """
    root = Path(trackml_dir) if trackml_dir else REAL_DATA_DIR
    full = root / "full"
    part_files = sorted(full.glob("event*-particles.csv*"))
    hit_files = sorted(full.glob("event*-hits.csv*"))
    if not part_files or not hit_files:
        raise DataError(f"{full}: expected real event*-particles.csv[.gz] and event*-hits.csv[.gz] files")
    rows = []
    for f in part_files:
        parts = read_table(f, "particles")
        pts = pt_of(parts["px"].to_numpy(np.float64), parts["py"].to_numpy(np.float64))
        rows.append({"n_particles": len(parts), "n_particles_with_hits": int((parts["nhits"] > 0).sum()),
                     "n_pt_above": int((pts > 0.9).sum()),
                     "n_reconstructable": int(((pts > 0.9) & (parts["nhits"] >= 3)).sum())})
    numbers = pd.DataFrame(rows).mean().to_dict()
    layers = []
    n_hits, n_pix = [], []
    for f in hit_files:
        hits = read_table(f, "hits")
        n_hits.append(len(hits))
        n_pix.append(int(hits["volume_id"].isin(PIXEL_VOLUMES).sum()))
        layers.append(hits_per_layer(Event(0, hits)))
    numbers["n_hits"] = float(np.mean(n_hits))
    numbers["n_pixel_hits"] = float(np.mean(n_pix))
    mini = root / "mini"
    truth_files = sorted(mini.glob("event*-truth.csv*"))
    if truth_files:
        truth = read_table(truth_files[0], "truth")
        numbers["noise_fraction"] = float((truth["particle_id"] == 0).mean())
    per_layer = pd.concat(layers).groupby(["volume_id", "layer_id"], as_index=False)["n_hits"].mean()
    return numbers, per_layer


def compare_with_real(summaries: pd.DataFrame, layers: pd.DataFrame,
                      trackml_dir: str | os.PathLike | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulated event statistics (from :func:`inspect_path`) next to the real samples.

    Returns (headline table: quantity, simulated mean, real, ratio; per-layer table of the pixel
    layers: simulated mean hits, real hits, ratio).
    """
    real, real_layers = real_reference(trackml_dir)
    rows = []
    for key in ("n_particles", "n_pt_above", "n_reconstructable", "n_hits", "n_pixel_hits", "noise_fraction"):
        if key in real and key in summaries and summaries[key].notna().any():
            sim = float(summaries[key].mean())
            rows.append({"quantity": key, "simulated": sim, "real": real[key], "ratio": sim / real[key]})
    table = pd.DataFrame(rows)
    n_events = summaries["event_id"].nunique()
    sim_layers = layers.groupby(["volume_id", "layer_id"], as_index=False)["n_hits"].sum()
    sim_layers["n_hits"] = sim_layers["n_hits"] / max(n_events, 1)
    per_layer = sim_layers.merge(real_layers, on=["volume_id", "layer_id"], how="outer",
                                 suffixes=("_simulated", "_real")).fillna(0.0)
    per_layer = per_layer[per_layer["volume_id"].isin(PIXEL_VOLUMES)].reset_index(drop=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_layer["ratio"] = per_layer["n_hits_simulated"] / per_layer["n_hits_real"]
    return table, per_layer
