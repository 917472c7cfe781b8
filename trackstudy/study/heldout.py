"""A trained run scored on held-out simulated events: the accuracy benchmark of a training config.

The held-out events are simulated like the run's validation data (pile-up, tracks per event,
pixel volumes) with a seed that neither its training nor its validation data used
(:func:`heldout_folder`); :func:`score_run` runs the model over them and reports the TrackML
score, the efficiencies (pT > 0.9 GeV), fake and duplicate rates, barrel vs endcap, DM efficiency
in bins of pT and eta with Clopper-Pearson intervals, DM efficiency against the size of the
locality cluster that holds the particle (:func:`dm_by_cluster_size`: what limits a full-event
model is often its largest clusters), against the |z| of its production vertex
(:func:`dm_by_vertex_z`) and against its number of hits (:func:`dm_by_hits`), and the seconds per
event of each inference stage;
:func:`baseline_comparison` puts a training-free baseline on the same events.
``scripts/bench_training.py`` is the command line of this module.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trackstudy.baselines import baseline_submission
from trackstudy.config import PIXEL_VOLUMES, resolve_path
from trackstudy.data.io import iter_events
from trackstudy.errors import ConfigError
from trackstudy.inference import STAGES, check_locality, cluster_hits, predict_events, select_pixel_hits
from trackstudy.metrics import evaluate_events, evaluate_submission_file, reconstructable, write_submission
from trackstudy.metrics.binned import binned_efficiency
from trackstudy.postprocessing.gnn_tracks import GNN_STAGES
from trackstudy.study.misses import captured_misses, miss_stages, summarize_misses
from trackstudy.training.checkpoint import load_run
from trackstudy.training.data import data_root, dataset_folder
from trackstudy.training.run_config import base_track_params

#: Summary keys of the report, in the order they are printed.
HEADLINE = ("trackml_score", "dm_efficiency", "dm_efficiency_pt1", "perfect_efficiency", "lhc_efficiency",
            "fake_rate", "duplicate_rate")
FORMATIONS = ("tuned", "base")  # score_run's track formation: the run's tuned one, or its config's tune.base
REGIONS = ("barrel_dm_efficiency", "endcap_dm_efficiency", "barrel_fake_rate", "endcap_fake_rate")


def heldout_folder(cfg: dict, n_events: int, seed: int) -> Path:
    """The folder of ``n_events`` held-out events for the resolved run config ``cfg``: simulated like
    its validation data, with ``seed`` (simulated on first use). ConfigError if the seed is one of
    the run's own."""
    spec = cfg["data"]["val"]
    if seed in {cfg["data"]["train"]["seed"], spec["seed"]}:
        raise ConfigError(f"held-out seed {seed} is used by the training or validation data; choose another")
    return dataset_folder({**spec, "dir": "", "n_events": int(n_events), "seed": int(seed)},
                          data_root(cfg["data"]["root"]))


def binned_dm(particles: pd.DataFrame) -> dict:
    """DM efficiency in bins of pT and eta (pT > 0.9 GeV for eta) with Clopper-Pearson 68% intervals,
    as plain rows per variable."""
    out = {}
    for var in ("pt", "eta"):
        table = binned_efficiency(particles, var)
        out[var] = [{k: (None if isinstance(v, float) and math.isnan(v) else
                         (int(v) if k.startswith("n_") else float(v))) for k, v in row.items()}
                    for row in table.to_dict(orient="records")]
    return out


#: Edges (mm) of the |production-vertex z| bins of :func:`dm_by_vertex_z` (the simulator's luminous
#: region has a standard deviation of ~6 mm, real event 1001's 5.5 mm).
VERTEX_Z_EDGES = (0.0, 2.0, 4.0, 6.0, 9.0, 14.0, np.inf)


def dm_by_vertex_z(particles: pd.DataFrame, *, edges=VERTEX_Z_EDGES) -> list[dict]:
    """DM efficiency of the reconstructable particles (pT > 0.9 GeV, >= 3 hits) per region and per
    |z| of their production vertex: a model that reads eta from the origin sees a particle from
    z0 with its inner barrel hits shifted by z0 / r (0.19 in eta for 6 mm at r = 32 mm).
    ``particles``: the evaluation's particle table (region, vz, dm_matched). Rows: region, low,
    high (mm), n (particles), dm_efficiency."""
    return _dm_by(particles, particles["vz"].abs(), edges)


#: Edges of the particle hit-count bins of :func:`dm_by_hits`: 3, 4, 5, 6, 7-9, >= 10 hits.
HITS_EDGES = (3, 4, 5, 6, 7, 10, np.inf)


def dm_by_hits(particles: pd.DataFrame, *, edges=HITS_EDGES) -> list[dict]:
    """DM efficiency of the reconstructable particles per region and per number of their hits
    (bins [low, high)): a particle with three pixel hits (the barrel's edge at |eta| ~ 1.5-2, where
    a track leaves the barrel before its fourth layer and passes outside the disks) is found by a
    track holding two of them, the same length as most of the pieces that make the fakes.
    Rows as :func:`dm_by_vertex_z`, low and high in hits."""
    return _dm_by(particles, particles["nhits"], edges)


def _dm_by(particles: pd.DataFrame, values: pd.Series, edges) -> list[dict]:
    """Rows region, low, high, n, dm_efficiency (None where empty) of the reconstructable particles
    binned by ``values`` (one per particle row) on ``edges``, barrel then endcap."""
    keep = reconstructable(particles)
    table, values = particles.loc[keep], values.loc[keep]
    rows = []
    for region in ("barrel", "endcap"):
        part = table["region"] == region
        for low, high in zip(edges[:-1], edges[1:]):
            sel = table.loc[part & (values >= low) & (values < high), "dm_matched"]
            rows.append({"region": region, "low": float(low), "high": float(high), "n": int(len(sel)),
                         "dm_efficiency": float(sel.mean()) if len(sel) else None})
    return rows


#: Edges (hits) of the cluster-size bins of :func:`dm_by_cluster_size`.
CLUSTER_SIZE_EDGES = (0, 50, 100, 200, 400, np.inf)


def dm_by_cluster_size(data: str | os.PathLike, locality: Mapping, particles: pd.DataFrame, *,
                       pixel_only: bool = True, edges=CLUSTER_SIZE_EDGES) -> list[dict]:
    """DM efficiency of the reconstructable particles (pT > 0.9 GeV, >= 3 hits) per region and per
    size of their locality cluster: the median, over a particle's hits, of the number of hits in the
    hit's cluster (``locality``: the run's section, as inference clusters the events of ``data``).
    ``particles``: the evaluation's particle table (event_id, particle_id, region, dm_matched).
    Rows: region, low, high (hits), n (particles), dm_efficiency."""
    sizes = []
    for ev in iter_events(resolve_path(data), parts=("hits", "truth")):
        hits = ev.hits.loc[select_pixel_hits(ev.hits)] if pixel_only else ev.hits
        labels = cluster_hits(hits, locality)
        if labels is None:  # full attention: one cluster, the event
            labels = np.zeros(len(hits), dtype=np.int64)
        _, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
        per_hit = pd.DataFrame({"hit_id": hits["hit_id"].to_numpy(), "size": counts[inv]})
        t = ev.truth[["hit_id", "particle_id"]].merge(per_hit, on="hit_id")
        med = t[t["particle_id"] != 0].groupby("particle_id")["size"].median()
        sizes.append(pd.DataFrame({"event_id": int(ev.event_id), "particle_id": med.index, "size": med.to_numpy()}))
    table = particles.loc[reconstructable(particles)].merge(pd.concat(sizes), on=["event_id", "particle_id"])
    rows = []
    for region in ("barrel", "endcap"):
        part = table[table["region"] == region]
        for low, high in zip(edges[:-1], edges[1:]):
            sel = part[(part["size"] > low) & (part["size"] <= high)]
            rows.append({"region": region, "low": float(low), "high": float(high), "n": int(len(sel)),
                         "dm_efficiency": float(sel["dm_matched"].mean()) if len(sel) else None})
    return rows


def score_run(run: str | os.PathLike, data: str | os.PathLike, *, device: str = "auto",
              weights: str | os.PathLike | None = None, locality_params: Mapping | None = None,
              by_cluster_size: bool = True, barrel_views=None, quality: bool = True,
              view_frame: bool | str | None = None, formation: str = "tuned") -> tuple[dict, pd.DataFrame]:
    """The report of run ``run`` on the events of ``data`` and its submission.

    ``weights``: a training checkpoint of the run (e.g. ``checkpoints/at_15min.pt``) scored instead
    of the final weights, with the run's tuned track formation; the report then names it.
    ``locality_params``: clustering parameters laid over the run's (e.g. ``{"barrel_max_size": 128}``:
    the same weights on smaller barrel clusters). ``barrel_views``: vertex z values (mm) of barrel
    views laid over the run's (:mod:`trackstudy.locality.views`; [] turns them off; the tag then ends in
    ``_views<K>``). The submission is written beside the run as
    ``heldout.csv`` (``heldout_<checkpoint>.csv``). ``quality``: choose the tracks with the run's
    track-quality scorer when it has one (``track_quality.npz``; the report's ``track_quality``
    holds its threshold, None without; False: the tag ends in ``_noquality``). ``view_frame``: the
    locality's ``view_frame`` laid over the run's (True: the tag ends in ``_frame``; "both":
    ``_bothframes``). ``formation``: "tuned" (the run's tuned track formation) or "base" (the
    parameters of its config's ``tune.base``, before tuning: one fixed operating point for runs
    compared with each other, so without the run's track-quality scorer; the tag ends in
    ``_base``). The report of a contrastive run (DBSCAN or kNN
    track formation) or of an edge model also says where the particles it missed were lost
    (``miss_reasons``: :mod:`trackstudy.study.misses`)."""
    if formation not in FORMATIONS:
        raise ConfigError(f"formation: expected one of {', '.join(FORMATIONS)}, got {formation!r}")
    run, data = resolve_path(run), resolve_path(data)
    model, run_config = load_run(run, device)
    if formation == "base":
        model.track_params = base_track_params(run_config["model"]["family"], run_config["tune"]["base"],
                                               getattr(model, "head_cfg", None))
    locality = dict(run_config["locality"])
    if locality_params:
        locality = check_locality({**locality, "params": {**(locality.get("params") or {}), **locality_params}})
    if barrel_views is not None:
        locality = check_locality({**locality, "barrel_views": list(barrel_views)})
    if view_frame is not None:
        locality = check_locality({**locality, "view_frame": view_frame})
    tag, info = "heldout", {}
    if weights:
        ck = torch.load(resolve_path(weights), map_location=next(model.parameters()).device, weights_only=True)
        model.load_state_dict(ck["model"])
        tag = f"heldout_{Path(weights).stem}"
        info = {"weights": str(weights), "weights_step": int(ck["step"]),
                "weights_train_seconds": float(ck["train_seconds"])}
    if barrel_views is not None:
        tag += f"_views{len(locality['barrel_views'])}"
    if view_frame:
        tag += "_bothframes" if view_frame == "both" else "_frame"
    if formation == "base":
        tag += "_base"
    if not quality:
        tag += "_noquality"
    quality = quality and formation == "tuned"  # the fixed operating point is the formation alone
    scorer = getattr(model, "track_quality", None) if quality else None
    pixel_only = run_config["data"]["train"]["pixel_only"]
    # the predictions keep what track formation saw (a contrastive run's embeddings, an edge model's
    # graph stages): where the misses were lost
    reasons = miss_stages(model)
    captures = {} if reasons else None
    sub, timings = predict_events(model, data, locality=locality, pixel_only=pixel_only, captures=captures,
                                  quality=quality)
    write_submission(sub, run / f"{tag}.csv", force=True)
    # the stages the model ran: those of a GNN run (GNN_STAGES) where its timings hold them
    stages = (*(GNN_STAGES if set(GNN_STAGES) <= set(timings.columns) else STAGES), "total")
    result = evaluate_submission_file(sub, data)
    s = result.summary
    report = {
        "tag": tag, "run": str(run), "heldout_data": str(data), "n_events": s["n_events"], "locality": locality,
        "track_quality": None if scorer is None else {"threshold": scorer.threshold}, "formation": formation,
        **{k: s.get(k) for k in HEADLINE},
        "seconds_per_event": {k: float(timings[k].mean()) for k in stages},
        # the median leaves out the first event's one-time start-up (CUDA context, kernels, caches)
        "seconds_per_event_median": {k: float(timings[k].median()) for k in stages},
        **info,
        **{k: s.get(k) for k in (*REGIONS, "n_particles", "n_tracks")},
        "binned": binned_dm(result.particles),
        "dm_by_vertex_z": dm_by_vertex_z(result.particles),
        "dm_by_hits": dm_by_hits(result.particles),
    }
    if by_cluster_size and (locality.get("method") or "none") != "none":
        report["dm_by_cluster_size"] = dm_by_cluster_size(data, locality, result.particles, pixel_only=pixel_only)
    if reasons:  # where the particles the run missed were lost (the stages of trackstudy.study.misses)
        table = pd.concat([captured_misses(model, ev, sub[sub["event_id"] == ev.event_id], captures[ev.event_id])
                           for ev in iter_events(data)], ignore_index=True)
        report["miss_reasons"] = summarize_misses(table, reasons).to_dict("records")
    return report, sub


def baseline_comparison(method: str, data: str | os.PathLike, submission: pd.DataFrame, n_events: int = 1,
                        progress: bool = True) -> dict:
    """A training-free baseline (e.g. ``dbscan-helix``) on the first ``n_events`` events of ``data``,
    and the model's ``submission`` scored on the same events (pixel volumes)."""
    events = list(iter_events(resolve_path(data), n_events=n_events))
    t0 = time.perf_counter()
    bsub = baseline_submission(method, events, volumes=PIXEL_VOLUMES, progress=progress)
    seconds = (time.perf_counter() - t0) / len(events)
    base = evaluate_events(bsub, events, volumes=PIXEL_VOLUMES)
    model = evaluate_events(submission[submission["event_id"].isin([e.event_id for e in events])], events,
                            volumes=PIXEL_VOLUMES)
    keys = ("trackml_score", "dm_efficiency", "barrel_dm_efficiency", "endcap_dm_efficiency", "fake_rate",
            "duplicate_rate")
    return {"method": method, "n_events": len(events), "seconds_per_event": seconds,
            **{k: base.summary.get(k) for k in keys},
            "model_on_the_same_events": {k: model.summary.get(k) for k in keys}}


__all__ = ["CLUSTER_SIZE_EDGES", "FORMATIONS", "HEADLINE", "REGIONS", "VERTEX_Z_EDGES", "baseline_comparison", "binned_dm",
           "dm_by_cluster_size", "dm_by_vertex_z", "heldout_folder", "score_run"]
