"""Locality measurements: does a clustering keep tracks whole, and how much attention does it save?

Per region (barrel, endcap) and overall:

* reconstructible ratio (the seeds' definition): among particles with pT > 0.9 GeV and at
  least 3 hits, the fraction with at least 50% of their hits in a single cluster; also the
  stricter *contained fraction* (all hits in one cluster) and the *prompt ratio* (the ratio
  among particles produced within 1 mm of the beam line: the projection assumes tracks that
  point back to the beam line, and nearly all lost tracks are displaced ones);
* cluster double-majority efficiency: the clusters taken as track candidates, scored with
  :func:`trackstudy.metrics.evaluate_event`;
* number of clusters, number of tracks (the particles counted by the ratio), cluster sizes;
* attention reduction ``sum(s_c^2) / N^2`` (the fraction of the dense N x N attention matrix
  kept by cluster-restricted attention) and the fraction of 128 x 128 blocks a FlexAttention
  block mask must compute after sorting the hits by cluster (:func:`block_fraction`).

Hit counts and regions: a particle's hits are its hits in the clustered selection (the pixel
volumes by default), counted from the truth. Its region is the one holding most of those hits
(ties go to the barrel). Its best cluster is searched over all its hits, so a particle whose
hits straddle barrel and endcap needs half of them on one surface.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trackstudy.data.io import select_volumes
from trackstudy.errors import ConfigError, DataError
from trackstudy.locality.clustering import cluster, resolve_params
from trackstudy.locality.projection import BARREL, REGIONS, Projection, Surfaces, project_hits
from trackstudy.metrics import evaluate_event

PT_MIN = 0.9
MIN_HITS = 3
MIN_FRACTION = 0.5
#: A particle is *prompt* when its production vertex lies within this distance (mm) of the beam
#: line. Displaced particles (decays, material interactions) do not point back to the origin,
#: so their projected hits smear; ``prompt_ratio`` is the reconstructible ratio of the prompt ones.
PROMPT_VERTEX_R = 1.0


# --------------------------------------------------------------------------- attention cost


def _labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ConfigError(f"cluster labels must be one-dimensional, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ConfigError(f"cluster labels must be integers, got dtype {labels.dtype}")
    if len(labels) and labels.min() < 0:
        raise ConfigError("cluster labels must be >= 0 (every hit in one cluster; noise as singletons)")
    return labels.astype(np.int64, copy=False)


def cluster_sizes(labels) -> np.ndarray:
    """Sizes (hits) of the non-empty clusters, in label order."""
    labels = _labels(labels)
    sizes = np.bincount(labels) if len(labels) else np.zeros(0, dtype=np.int64)
    return sizes[sizes > 0]


def attention_reduction(labels) -> float:
    """Fraction of the N x N attention matrix kept when hits attend only within their cluster:
    ``sum_c s_c^2 / N^2`` (1 for one cluster, 1/N for singletons; NaN for no hits)."""
    sizes = cluster_sizes(labels).astype(np.float64)
    n = sizes.sum()
    return float((sizes**2).sum() / n**2) if n else float("nan")


def block_fraction(labels, block_size: int = 128) -> float:
    """Fraction of (query block, key block) pairs a block-sparse mask must compute.

    Hits are sorted by label (stable), cut into blocks of ``block_size`` (the last one may be
    partial) and a block pair counts when it holds at least one same-cluster pair of hits.
    Total = ceil(N / block_size)^2. After sorting, each cluster is a contiguous run, so the key
    blocks of query block q form one interval: from the first block of the cluster holding q's
    first hit to the last block of the cluster holding q's last hit.
    """
    labels = _labels(labels)
    if block_size < 1:
        raise ConfigError(f"block_size={block_size!r}: must be a positive integer")
    n = len(labels)
    if n == 0:
        return float("nan")
    s = np.sort(labels, kind="stable")
    change = np.flatnonzero(np.diff(s)) + 1
    starts = np.concatenate([[0], change])          # first position of each run
    ends = np.concatenate([change, [n]])            # one past its last position
    run_of = np.repeat(np.arange(len(starts)), ends - starts)
    nb = -(-n // block_size)
    first = np.arange(nb) * block_size
    last = np.minimum(first + block_size, n) - 1
    lo = starts[run_of[first]] // block_size
    hi = (ends[run_of[last]] - 1) // block_size
    return float((hi - lo + 1).sum() / nb**2)


# --------------------------------------------------------------------------- track containment


def particle_containment(labels, particle_id, particles: pd.DataFrame, *, surface=None,
                         pt_min: float = PT_MIN, min_hits: int = MIN_HITS,
                         min_fraction: float = MIN_FRACTION) -> pd.DataFrame:
    """One row per particle with hits: how its hits spread over the clusters.

    labels: (n,) cluster label per hit; particle_id: (n,) int64 truth particle per hit (0 = noise);
    particles: table with particle_id, px, py; surface: (n,) surface code per hit (None: all barrel).
    Columns: particle_id, pt (GeV), n_hits, best_hits (hits in its most populated cluster),
    fraction = best_hits / n_hits, region ("barrel"/"endcap", where most of its hits are),
    selected (pt > pt_min and n_hits >= min_hits), reconstructible (fraction >= min_fraction),
    contained (all hits in one cluster), and, when particles has vx, vy, prompt (production
    vertex within PROMPT_VERTEX_R = 1 mm of the beam line).
    """
    labels = _labels(labels)
    pid = np.asarray(particle_id)
    if pid.dtype.kind not in "iu":
        raise DataError(f"particle_id must be integers (int64), got dtype {pid.dtype}")
    if len(pid) != len(labels):
        raise DataError(f"{len(labels)} cluster labels for {len(pid)} truth particle ids")
    for col in ("particle_id", "px", "py"):
        if col not in particles.columns:
            raise DataError(f"particles table: missing column {col}")
    surface = np.zeros(len(labels), dtype=np.int8) if surface is None else np.asarray(surface)
    real = pid != 0
    df = pd.DataFrame({"particle_id": pid[real].astype(np.int64), "label": labels[real],
                       "endcap": surface[real] != BARREL})
    if df.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in [
            ("particle_id", "int64"), ("pt", "float64"), ("n_hits", "int64"), ("best_hits", "int64"),
            ("fraction", "float64"), ("region", "object"), ("selected", "bool"),
            ("reconstructible", "bool"), ("contained", "bool")]})
    per_cluster = df.groupby(["particle_id", "label"], sort=False).size()
    best = per_cluster.groupby(level=0).max()
    g = df.groupby("particle_id")
    out = pd.DataFrame({"n_hits": g.size(), "n_endcap": g["endcap"].sum()})
    out["best_hits"] = best.reindex(out.index).to_numpy()
    out = out.reset_index()
    known = particles.drop_duplicates("particle_id").set_index("particle_id")
    missing = ~out["particle_id"].isin(known.index)
    if missing.any():
        raise DataError(f"particle {out['particle_id'][missing].iloc[0]} has hits but is not in the particles table")
    rows = known.loc[out["particle_id"]]
    out["pt"] = np.hypot(rows["px"].to_numpy(np.float64), rows["py"].to_numpy(np.float64))
    out["fraction"] = out["best_hits"] / out["n_hits"]
    out["region"] = np.where(out["n_endcap"] * 2 > out["n_hits"], "endcap", "barrel")
    out["selected"] = (out["pt"] > pt_min) & (out["n_hits"] >= min_hits)
    out["reconstructible"] = out["fraction"] >= min_fraction
    out["contained"] = out["best_hits"] == out["n_hits"]
    cols = ["particle_id", "pt", "n_hits", "best_hits", "fraction", "region", "selected", "reconstructible",
            "contained"]
    if {"vx", "vy"} <= set(known.columns):
        out["prompt"] = np.hypot(rows["vx"].to_numpy(np.float64), rows["vy"].to_numpy(np.float64)) < PROMPT_VERTEX_R
        cols.append("prompt")
    return out[cols]


def reconstructible_ratio(labels, particle_id, particles: pd.DataFrame, *, surface=None, region: str = "all",
                          pt_min: float = PT_MIN, min_hits: int = MIN_HITS,
                          min_fraction: float = MIN_FRACTION) -> float:
    """Fraction of particles (pT > pt_min GeV, >= min_hits hits, in ``region``) with at least
    ``min_fraction`` of their hits in one cluster; NaN when there is no such particle."""
    table = particle_containment(labels, particle_id, particles, surface=surface, pt_min=pt_min,
                                 min_hits=min_hits, min_fraction=min_fraction)
    sel = table["selected"] & ((table["region"] == region) if region != "all" else True)
    return float(table.loc[sel, "reconstructible"].mean()) if sel.any() else float("nan")


def cluster_dm_efficiency(labels, hit_id, truth: pd.DataFrame, particles: pd.DataFrame, *,
                          event_id: int = 0, pt_min: float = PT_MIN, min_hits: int = MIN_HITS) -> float:
    """Double-majority efficiency of the clusters taken as track candidates.

    labels: (n,) cluster per hit; hit_id: (n,) the hits' ids; truth: the truth rows of these hits;
    particles: the particles whose efficiency is measured (pass a region's particles for a
    per-region efficiency). The rule is :func:`trackstudy.metrics.evaluate_event`'s.
    """
    sub = pd.DataFrame({"event_id": np.full(len(labels), int(event_id), dtype=np.int64),
                        "hit_id": np.asarray(hit_id), "track_id": _labels(labels)})
    result = evaluate_event(sub, truth, particles, pt_min=pt_min, min_hits=min_hits)
    return float(result["dm_efficiency"])


# --------------------------------------------------------------------------- one event


@dataclass
class LocalityResult:
    """Locality measurements of one event (see :func:`measure_locality`).

    regions: {"barrel", "endcap", "all"} -> dict of scalar measures; labels: (n,) cluster per hit of
    the selection; projection: the projected hits; particles: the per-particle table (None
    without truth); seconds: projection + clustering + block-mask summary time; hit_id and
    particle_id: (n,) per hit of the selection (particle_id None without truth).
    """

    event_id: int
    method: str
    params: dict
    regions: dict
    labels: np.ndarray
    projection: Projection
    particles: pd.DataFrame | None
    block_fraction: float
    seconds: float
    hit_id: np.ndarray = field(repr=False, default=None)
    particle_id: np.ndarray | None = field(repr=False, default=None)

    @property
    def block_sparsity(self) -> float:
        """Fraction of 128 x 128 blocks the block mask skips (1 - block_fraction)."""
        return 1.0 - self.block_fraction

    def to_dict(self) -> dict:
        """JSON-ready summary (NaN -> None)."""
        def clean(v):
            if isinstance(v, (float, np.floating)):
                return None if not np.isfinite(v) else float(v)
            if isinstance(v, (np.integer,)):
                return int(v)
            return v
        out = {r: {k: clean(v) for k, v in d.items()} for r, d in self.regions.items()}
        out.update(event_id=int(self.event_id), method=self.method, params=dict(self.params),
                   block_fraction=clean(self.block_fraction), block_sparsity=clean(self.block_sparsity),
                   seconds=float(self.seconds))
        return out


def _size_stats(sizes: np.ndarray) -> dict:
    if len(sizes) == 0:
        return {"mean_cluster_size": float("nan"), "median_cluster_size": float("nan"),
                "p90_cluster_size": float("nan"), "max_cluster_size": 0}
    return {"mean_cluster_size": float(sizes.mean()), "median_cluster_size": float(np.median(sizes)),
            "p90_cluster_size": float(np.percentile(sizes, 90)), "max_cluster_size": int(sizes.max())}


def measure_locality(event, method: str = "dbscan", *, params: dict | None = None, pixel_only: bool = True,
                     surfaces: Surfaces | None = None, vertex_scan: bool | str = False, z_candidates=None,
                     block_size: int = 128, dm: bool = True, pt_min: float = PT_MIN,
                     min_hits: int = MIN_HITS) -> LocalityResult:
    """Project, cluster and measure one event (a :class:`trackstudy.data.io.Event`).

    pixel_only: keep the pixel volumes 7, 8, 9 only (the method is built for the pixel detector;
    strip hits lie far outside the projection surfaces). Without truth/particles, the track
    measures are NaN and only sizes and reductions are filled. dm: also compute the cluster
    DM efficiency (trackstudy.metrics.evaluate_event). vertex_scan: refine clusters by the
    vertex-z scan (True/"endcap", "barrel", "all"; see :func:`trackstudy.locality.clustering.cluster`).
    """
    params = dict(params or {})
    resolve_params(method, params)  # fail early on a bad name or value
    if pixel_only:
        event = select_volumes(event)
    hits = event.hits
    if len(hits) == 0:
        raise DataError(f"event {event.event_id}: no hits in the selection"
                        + (" (pixel volumes 7, 8, 9)" if pixel_only else ""))
    t0 = time.perf_counter()
    proj = project_hits(hits, surfaces=surfaces)
    labels = cluster(proj, method, vertex_scan=vertex_scan, z_candidates=z_candidates, **params)
    bf = block_fraction(labels, block_size)
    seconds = time.perf_counter() - t0

    have_truth = event.truth is not None and event.particles is not None
    table = None
    pid = None
    if have_truth:
        truth = event.truth.set_index("hit_id").loc[hits["hit_id"].to_numpy()]
        pid = truth["particle_id"].to_numpy()
        table = particle_containment(labels, pid, event.particles, surface=proj.surface,
                                     pt_min=pt_min, min_hits=min_hits)
    regions = {}
    for region in ("barrel", "endcap", "all"):
        mask = proj.region_mask(region)
        lab = labels[mask]
        sizes = cluster_sizes(lab)
        d = {"n_hits": int(mask.sum()), "n_clusters": int(len(sizes)),
             "attention_reduction": attention_reduction(lab) if len(lab) else float("nan"),
             "block_fraction": block_fraction(lab, block_size) if len(lab) else float("nan")}
        d.update(_size_stats(sizes))
        if have_truth:
            sel = table["selected"] & ((table["region"] == region) if region != "all" else True)
            d["n_tracks"] = int(sel.sum())
            d["reconstructible_ratio"] = float(table.loc[sel, "reconstructible"].mean()) if sel.any() else float("nan")
            d["contained_fraction"] = float(table.loc[sel, "contained"].mean()) if sel.any() else float("nan")
            psel = sel & table["prompt"] if "prompt" in table.columns else sel & False
            d["prompt_ratio"] = float(table.loc[psel, "reconstructible"].mean()) if psel.any() else float("nan")
            if dm:
                if sel.any():
                    chosen = event.particles["particle_id"].isin(table.loc[sel, "particle_id"])
                    region_particles = event.particles[chosen]
                    d["cluster_dm_efficiency"] = cluster_dm_efficiency(
                        labels, hits["hit_id"].to_numpy(), event.truth, region_particles,
                        event_id=event.event_id, pt_min=pt_min, min_hits=min_hits)
                else:
                    d["cluster_dm_efficiency"] = float("nan")
        else:
            d.update(n_tracks=None, reconstructible_ratio=float("nan"), contained_fraction=float("nan"),
                     prompt_ratio=float("nan"))
            if dm:
                d["cluster_dm_efficiency"] = float("nan")
        regions[region] = d
    return LocalityResult(event_id=int(event.event_id), method=method, params=params, regions=regions,
                          labels=labels, projection=proj, particles=table, block_fraction=bf,
                          seconds=seconds, hit_id=hits["hit_id"].to_numpy(), particle_id=pid)


def mean_results(results: list[LocalityResult]) -> dict:
    """Per-region means over events of the scalar measures (JSON-ready, NaN -> None), plus
    block_fraction, block_sparsity, seconds and n_events."""
    if not results:
        raise ConfigError("no events to average")
    dicts = [r.to_dict() for r in results]
    out: dict = {}
    for region in REGIONS:
        keys = dicts[0][region].keys()
        out[region] = {}
        for k in keys:
            vals = [d[region][k] for d in dicts if d[region][k] is not None]
            out[region][k] = float(np.mean(vals)) if vals else None
    for k in ("block_fraction", "block_sparsity", "seconds"):
        vals = [d[k] for d in dicts if d[k] is not None]
        out[k] = float(np.mean(vals)) if vals else None
    out.update(method=results[0].method, params=results[0].params, n_events=len(results),
               event_ids=[r.event_id for r in results])
    return out
