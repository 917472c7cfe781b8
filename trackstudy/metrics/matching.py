"""Track-to-particle matching: the one place where the TrackML score and the double-majority rule live.

:func:`match_tracks` builds, for one event, a per-track and a per-particle table from which
every metric of the study derives (score, efficiencies, fake and duplicate rates, binned
efficiencies). :func:`evaluate_event` and :func:`trackml_score` are the stable entry points
used by notebooks, the CLI and the other pipeline stages.

Definitions (for one event; the *hit universe* is the rows of the given truth table, so a
volume-selected event is scored on its selected hits only):

- Majority particle of a track: the particle with the most hits in the track. Ties go to the
  smallest particle_id, which is what the official trackml-library ``score_event`` does (it
  walks hits sorted by ``(track_id, particle_id)`` and replaces the majority only on a strictly
  larger count). Ties never change any metric: a tied majority holds at most 50% of the track.
- Noise (particle_id 0) is treated like any particle when choosing the majority and for the
  score's > 50% tests, as in the official score; its truth weight is 0 so it adds nothing.
  For efficiencies, fakes and duplicates noise is never a matchable particle.
- A particle's hit count is counted in the truth table given (all its hits in the universe).
- TrackML score: sum of the truth weights of the majority particle's hits over the tracks whose
  majority holds > 50% of the track's hits and > 50% of the particle's hits, divided by the
  total weight of the truth table.
- Hits missing from the submission, and hits with a negative track_id, are unassigned (in no
  track). (The official scorer turns each missing hit into its own one-hit track, which can
  only differ from this for one-hit particles.)
- Double-majority (DM) match: the same two > 50% conditions, majority not noise. A particle
  has at most one DM track (two tracks cannot both hold > 50% of its hits).
- LHC match: a track with >= ``min_hits`` hits whose purity (majority hits / track hits) is
  > 75%, majority not noise (the hit minimum keeps one-hit "tracks" from matching).
- Perfect match: the track holds exactly all the particle's hits and nothing else.
- Track candidates for fake and duplicate rates: tracks with >= ``min_hits`` hits.
  Fake: a candidate with no DM match. Duplicates: since DM matches are unique per particle,
  duplicates use single-majority matching (purity > 50%): for each reconstructable particle
  that is the > 50% majority of k >= 1 candidates, k - 1 duplicates; the rate is over those particles.
- Reconstructable particle: pT > ``pt_min`` GeV, >= ``min_hits`` hits in the universe,
  |eta| < ``eta_max`` (particle momentum at production).
- Region (barrel / endcap) of a particle or a track: barrel when strictly more than half of
  its hits are in barrel volumes (8, 13, 17), else endcap. Volumes come from a ``volume_id``
  column (truth or the optional ``hits``); without one, from the truth positions with the
  TrackML geometry: barrel iff (r < 200 mm and |z| < 550 mm) or (r >= 200 mm and |z| < 1150 mm)
  (pixel barrel |z| <= 491 mm, pixel disks from |z| ~ 600 mm; strip barrels |z| <= 1083 mm,
  strip disks from |z| ~ 1220 mm), which gives the same answer on TrackML events. With neither,
  regions are "unknown" and the barrel_ / endcap_ numbers are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trackstudy.config import B_FIELD_T
from trackstudy.errors import ConfigError, DataError
from trackstudy.kinematics import eta_from_momentum, origin_circle_pt, phi, pt
from trackstudy.metrics.submission import validate_submission

#: Barrel volumes of the TrackML detector (pixel, short strips, long strips).
BARREL_VOLUMES = (8, 13, 17)

HEADLINE_KEYS = ("trackml_score", "dm_efficiency", "perfect_efficiency", "lhc_efficiency",
                 "fake_rate", "duplicate_rate")


@dataclass
class Matching:
    """Per-hit, per-track and per-particle matching tables of one event.

    hits: one row per truth hit: hit_id, particle_id, weight, track_id (-1 = unassigned),
      barrel (bool), x, y, z (mm; from ``hits`` if given, else the truth positions, if any).
    tracks: one row per track (unassigned hits excluded): track_id, nhits,
      major_particle_id, major_nhits, major_weight (truth weight of its majority hits),
      major_particle_nhits, purity, completeness, good (counts for the score), dm, lhc,
      perfect, region ("barrel"/"endcap").
    particles: one row per particle of the particles table (noise excluded): particle_id,
      nhits (in the universe), weight, q, pt, eta, phi (GeV, radians), vz (mm), region
      ("barrel"/"endcap"; "none" without hits; "unknown" without volumes or positions), dm_matched, lhc_matched, perfect_matched,
      n_major50 (candidate tracks with >= min_hits hits of which it is the > 50% majority).
    total_weight: sum of the truth weights (score denominator).
    """

    hits: pd.DataFrame
    tracks: pd.DataFrame
    particles: pd.DataFrame
    total_weight: float
    min_hits: int
    event_id: int | None = None


def _check_cuts(pt_min: float, min_hits: int, eta_max: float) -> None:
    if not np.isfinite(pt_min) or pt_min < 0:
        raise ConfigError(f"pt_min={pt_min!r}: must be a finite number >= 0 (GeV)")
    if int(min_hits) != min_hits or min_hits < 1:
        raise ConfigError(f"min_hits={min_hits!r}: must be an integer >= 1")
    if not eta_max > 0:
        raise ConfigError(f"eta_max={eta_max!r}: must be > 0")


def _barrel_flags(truth: pd.DataFrame, hits: pd.DataFrame | None, positions: tuple | None) -> np.ndarray | None:
    """Per truth row: True when the hit is in a barrel volume (see module docstring); None when
    neither volumes nor positions are available."""
    if "volume_id" in truth.columns:
        return np.isin(truth["volume_id"].to_numpy(), BARREL_VOLUMES)
    if hits is not None and "volume_id" in hits.columns:
        vol = pd.Series(hits["volume_id"].to_numpy(), index=hits["hit_id"].to_numpy())
        v = vol.reindex(truth["hit_id"].to_numpy()).to_numpy()
        return np.isin(v, BARREL_VOLUMES)
    if positions is not None:
        x, y, z = positions
        r = np.hypot(x, y)
        az = np.abs(z)
        return ((r < 200.0) & (az < 550.0)) | ((r >= 200.0) & (az < 1150.0))
    return None


def _positions(truth: pd.DataFrame, hits: pd.DataFrame | None):
    if hits is not None and {"x", "y", "z"} <= set(hits.columns):
        h = hits.set_index("hit_id")[["x", "y", "z"]].reindex(truth["hit_id"].to_numpy())
        return tuple(h[c].to_numpy(np.float64) for c in ("x", "y", "z"))
    if {"tx", "ty", "tz"} <= set(truth.columns):
        return tuple(truth[c].to_numpy(np.float64) for c in ("tx", "ty", "tz"))
    return None


def match_tracks(submission: pd.DataFrame, truth: pd.DataFrame, particles: pd.DataFrame | None = None, *,
                 hits: pd.DataFrame | None = None, min_hits: int = 3, detector_regions: bool = True,
                 validate: bool = True, source: str = "submission", event_id: int | None = None) -> Matching:
    """Match the tracks of one event's submission to the truth (vectorised; see module docstring).

    submission: ``hit_id, track_id`` (``event_id`` ignored unless ``event_id`` is given).
    truth: ``hit_id, particle_id, weight`` (+ ``tx, ty, tz`` / ``volume_id`` for regions).
    particles: ``particle_id, vx, vy, vz, px, py, pz`` (+ ``q``); None gives an empty particle table.
    hits: optional hits table for positions and volumes.
    """
    for col in ("hit_id", "particle_id", "weight"):
        if col not in truth.columns:
            raise DataError(f"truth: missing column {col}")
    if truth["particle_id"].dtype.kind not in "iu":
        raise DataError(f"truth: column particle_id has dtype {truth['particle_id'].dtype}; particle ids must be "
                        f"integers (a float cast merges distinct ids)")
    if validate:
        sub = validate_submission(submission, truth, source=source, event_id=event_id)
    else:
        sub = pd.DataFrame({"hit_id": submission["hit_id"].to_numpy(np.int64),
                            "track_id": submission["track_id"].to_numpy(np.int64)})
    t_hit = truth["hit_id"].to_numpy()
    pid = truth["particle_id"].to_numpy().astype(np.int64, copy=False)
    weight = truth["weight"].to_numpy(np.float64)
    n = len(truth)

    # track id per truth row; -1 = unassigned (missing from the submission or negative)
    track = np.full(n, -1, dtype=np.int64)
    if len(sub):
        rows = pd.Index(t_hit).get_indexer(sub["hit_id"].to_numpy())
        if (rows < 0).any():  # only reachable with validate=False
            raise DataError(f"{source}: hit {sub['hit_id'].to_numpy()[rows < 0][0]} is not in the truth table")
        track[rows] = sub["track_id"].to_numpy()
    track[track < 0] = -1
    assigned = track >= 0

    # particles of the universe (noise included, as particle 0): sorted unique ids and hit counts
    p_ids, p_inv, p_counts = np.unique(pid, return_inverse=True, return_counts=True)
    positions = _positions(truth, hits)
    barrel = _barrel_flags(truth, hits, positions) if detector_regions else None
    # without volumes or positions the regions are "unknown" (barrel_/endcap_ numbers then NaN)
    region_known = barrel is not None
    if barrel is None:
        barrel = np.zeros(n, dtype=bool)

    # (track, particle) pairs over assigned hits
    t_ids, t_inv, t_counts = np.unique(track[assigned], return_inverse=True, return_counts=True)
    n_p = len(p_ids)
    key = t_inv.astype(np.int64) * n_p + p_inv[assigned]
    pair_key, pair_inv, pair_n = np.unique(key, return_inverse=True, return_counts=True)
    pair_w = np.bincount(pair_inv, weights=weight[assigned], minlength=len(pair_key))
    pair_t = pair_key // n_p if n_p else pair_key
    pair_p = pair_key % n_p if n_p else pair_key
    # majority per track: most hits, ties -> smallest particle id (p index is sorted by id)
    order = np.lexsort((pair_p, -pair_n, pair_t))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pair_t[order][1:] != pair_t[order][:-1]
    maj = order[first]  # one pair per track, in track order
    maj_p = pair_p[maj]
    maj_n = pair_n[maj]
    t_barrel = np.bincount(t_inv, weights=barrel[assigned].astype(np.float64), minlength=len(t_ids))

    tracks = pd.DataFrame({
        "track_id": t_ids,
        "nhits": t_counts.astype(np.int64),
        "major_particle_id": p_ids[maj_p] if len(maj_p) else np.zeros(0, dtype=np.int64),
        "major_nhits": maj_n.astype(np.int64),
        "major_weight": pair_w[maj],
        "major_particle_nhits": p_counts[maj_p].astype(np.int64) if len(maj_p) else np.zeros(0, dtype=np.int64),
    })
    tn = tracks["nhits"].to_numpy()
    mn = tracks["major_nhits"].to_numpy()
    mpn = tracks["major_particle_nhits"].to_numpy()
    not_noise = tracks["major_particle_id"].to_numpy() != 0
    tracks["purity"] = mn / np.maximum(tn, 1)
    tracks["completeness"] = mn / np.maximum(mpn, 1)
    # integer comparisons: exact, no float rounding at the 50% / 75% boundaries
    good = (2 * mn > tn) & (2 * mn > mpn)
    tracks["good"] = good
    tracks["dm"] = good & not_noise
    tracks["lhc"] = (4 * mn > 3 * tn) & not_noise & (tn >= min_hits)
    tracks["perfect"] = (mn == tn) & (mn == mpn) & not_noise
    tracks["region"] = (np.where(2 * t_barrel > tn, "barrel", "endcap") if region_known
                        else ("unknown" if detector_regions else "all"))

    # per-particle table
    hits_tab = pd.DataFrame({"hit_id": t_hit, "particle_id": pid, "weight": weight, "track_id": track,
                             "barrel": barrel})
    if positions is not None:
        hits_tab["x"], hits_tab["y"], hits_tab["z"] = positions
    particles_tab = _particle_table(particles, p_ids, p_counts, p_inv, pid, weight, barrel, tracks,
                                    int(min_hits), "known" if region_known else
                                    ("unknown" if detector_regions else "all"))
    total_weight = float(weight.sum())
    return Matching(hits=hits_tab, tracks=tracks, particles=particles_tab, total_weight=total_weight,
                    min_hits=int(min_hits), event_id=event_id)


def _particle_table(particles, p_ids, p_counts, p_inv, pid, weight, barrel, tracks, min_hits, regions: str):
    if particles is None:
        base = pd.DataFrame({"particle_id": p_ids[p_ids != 0]})
        for c in ("q", "pt", "eta", "phi", "vz"):
            base[c] = np.nan
    else:
        for col in ("particle_id", "px", "py", "pz"):
            if col not in particles.columns:
                raise DataError(f"particles: missing column {col}")
        px = particles["px"].to_numpy(np.float64)
        py = particles["py"].to_numpy(np.float64)
        pz = particles["pz"].to_numpy(np.float64)
        base = pd.DataFrame({
            "particle_id": particles["particle_id"].to_numpy().astype(np.int64),
            "q": particles["q"].to_numpy() if "q" in particles.columns else np.nan,
            "pt": pt(px, py),
            "eta": eta_from_momentum(px, py, pz),
            "phi": phi(px, py),
            "vz": particles["vz"].to_numpy(np.float64) if "vz" in particles.columns else np.nan,
        })
        base = base[base["particle_id"] != 0].reset_index(drop=True)
    ids = base["particle_id"].to_numpy()
    pos = np.searchsorted(p_ids, ids)
    pos_c = np.minimum(pos, max(len(p_ids) - 1, 0))
    present = (len(p_ids) > 0) & (p_ids[pos_c] == ids) if len(p_ids) else np.zeros(len(ids), dtype=bool)
    nh = np.where(present, p_counts[pos_c] if len(p_ids) else 0, 0)
    w_sum = np.bincount(p_inv, weights=weight, minlength=len(p_ids))
    b_sum = np.bincount(p_inv, weights=barrel.astype(np.float64), minlength=len(p_ids))
    base["nhits"] = nh.astype(np.int64)
    base["weight"] = np.where(present, w_sum[pos_c] if len(p_ids) else 0.0, 0.0)
    if regions == "known":
        nb = np.where(present, b_sum[pos_c] if len(p_ids) else 0.0, 0.0)
        base["region"] = np.where(nh == 0, "none", np.where(2 * nb > nh, "barrel", "endcap"))
    else:  # "all" (regions not asked for) or "unknown" (no volumes / positions)
        base["region"] = np.where(nh == 0, "none", regions)
    mp = tracks["major_particle_id"].to_numpy()
    base["dm_matched"] = np.isin(ids, mp[tracks["dm"].to_numpy()])
    base["lhc_matched"] = np.isin(ids, mp[tracks["lhc"].to_numpy()])
    base["perfect_matched"] = np.isin(ids, mp[tracks["perfect"].to_numpy()])
    t_n = tracks["nhits"].to_numpy()
    cand = (t_n >= min_hits) & (2 * tracks["major_nhits"].to_numpy() > t_n)
    counts = pd.Series(mp[cand]).value_counts()
    base["n_major50"] = pd.Series(ids).map(counts).fillna(0).astype(np.int64).to_numpy()
    return base


def reconstructable(particles_table: pd.DataFrame, *, pt_min: float = 0.9, min_hits: int = 3,
                    eta_max: float = 4.0) -> np.ndarray:
    """Mask of reconstructable particles: pT > pt_min GeV, nhits >= min_hits, |eta| < eta_max."""
    _check_cuts(pt_min, min_hits, eta_max)
    t = particles_table
    return ((t["pt"].to_numpy() > pt_min) & (t["nhits"].to_numpy() >= min_hits)
            & (np.abs(t["eta"].to_numpy()) < eta_max))


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den > 0 else float("nan")


def score_from_matching(m: Matching) -> float:
    """TrackML score of a matching (NaN when the truth weights sum to 0)."""
    good = m.tracks["good"].to_numpy()
    return _ratio(m.tracks["major_weight"].to_numpy()[good].sum(), m.total_weight)


def trackml_score(submission: pd.DataFrame, truth: pd.DataFrame, *, validate: bool = True) -> float:
    """The TrackML challenge score of one event's submission (``hit_id, track_id``) against truth
    (``hit_id, particle_id, weight``); hits missing from the submission are unassigned."""
    return score_from_matching(match_tracks(submission, truth, None, detector_regions=False, validate=validate))


def _efficiencies(parts: pd.DataFrame, mask: np.ndarray, prefix: str, suffix: str = "") -> dict:
    n = int(mask.sum())
    return {
        f"{prefix}dm_efficiency{suffix}": _ratio(parts["dm_matched"].to_numpy()[mask].sum(), n),
        f"{prefix}perfect_efficiency{suffix}": _ratio(parts["perfect_matched"].to_numpy()[mask].sum(), n),
        f"{prefix}lhc_efficiency{suffix}": _ratio(parts["lhc_matched"].to_numpy()[mask].sum(), n),
        f"{prefix}n_particles{suffix}": n,
    }


def _track_rates(tracks: pd.DataFrame, min_hits: int, prefix: str, region: str | None) -> dict:
    cand = tracks["nhits"].to_numpy() >= min_hits
    if region is not None:
        cand &= tracks["region"].to_numpy() == region
    n = int(cand.sum())
    fakes = int((cand & ~tracks["dm"].to_numpy()).sum())
    return {f"{prefix}fake_rate": _ratio(fakes, n), f"{prefix}n_tracks": n, f"{prefix}n_fake": fakes}


def summarize_matching(m: Matching, *, pt_min: float = 0.9, min_hits: int = 3, eta_max: float = 4.0,
                       detector_regions: bool = True) -> dict:
    """The headline numbers of a matching (see :func:`evaluate_event` for the keys)."""
    _check_cuts(pt_min, min_hits, eta_max)
    parts = m.particles
    rec = reconstructable(parts, pt_min=pt_min, min_hits=min_hits, eta_max=eta_max)
    rec1 = reconstructable(parts, pt_min=max(pt_min, 1.0), min_hits=min_hits, eta_max=eta_max)
    out: dict = {"trackml_score": score_from_matching(m)}
    out.update(_efficiencies(parts, rec, ""))
    n_major = parts["n_major50"].to_numpy()
    matched = rec & (n_major > 0)
    out["duplicate_rate"] = _ratio((n_major[matched] - 1).sum(), matched.sum())
    out.update(_track_rates(m.tracks, min_hits, "", None))
    out.update(_efficiencies(parts, rec1, "", "_pt1"))
    out["n_hits"] = int(len(m.hits))
    out["n_hits_assigned"] = int((m.hits["track_id"].to_numpy() >= 0).sum())
    out["n_tracks_all"] = int(len(m.tracks))
    out["n_dm_matched"] = int(parts["dm_matched"].to_numpy()[rec].sum())
    out["n_duplicate"] = int((n_major[matched] - 1).sum())
    if detector_regions:
        region = parts["region"].to_numpy()
        for reg in ("barrel", "endcap"):
            out.update(_efficiencies(parts, rec & (region == reg), f"{reg}_"))
            out.update(_track_rates(m.tracks, min_hits, f"{reg}_", reg))
    if m.event_id is not None:
        out = {"event_id": int(m.event_id), **out}
    # keep the headline keys first, in the documented order
    head = {k: out.pop(k) for k in ("event_id", *HEADLINE_KEYS) if k in out}
    return {**head, **out}


def evaluate_event(submission: pd.DataFrame, truth: pd.DataFrame, particles: pd.DataFrame, *,
                   pt_min: float = 0.9, min_hits: int = 3, eta_max: float = 4.0, detector_regions: bool = True,
                   hits: pd.DataFrame | None = None, validate: bool = True, source: str = "submission") -> dict:
    """Headline metrics of one event's submission.

    Returns a dict with (fractions; NaN when the denominator is 0):
    ``trackml_score, dm_efficiency, perfect_efficiency, lhc_efficiency, fake_rate,
    duplicate_rate``; counts ``n_particles`` (reconstructable), ``n_tracks`` (>= min_hits hits),
    ``n_fake, n_duplicate, n_dm_matched, n_hits, n_hits_assigned, n_tracks_all``; the same
    efficiencies for pT > 1 GeV with suffix ``_pt1`` (e.g. ``dm_efficiency_pt1``); and, with
    ``detector_regions``, ``barrel_`` / ``endcap_`` variants of the efficiencies,
    ``n_particles``, ``fake_rate``, ``n_tracks`` and ``n_fake``.
    Definitions: see the module docstring of :mod:`trackstudy.metrics.matching`.
    """
    _check_cuts(pt_min, min_hits, eta_max)
    m = match_tracks(submission, truth, particles, hits=hits, min_hits=min_hits,
                     detector_regions=detector_regions, validate=validate, source=source)
    return summarize_matching(m, pt_min=pt_min, min_hits=min_hits, eta_max=eta_max,
                              detector_regions=detector_regions)


def track_parameters(m: Matching, b_field: float = B_FIELD_T) -> pd.DataFrame:
    """Detector-level kinematics of each track, estimated from its hit positions.

    pt (GeV): radius of the circle through the origin fitted to the hits in x-y (algebraic
    least squares: x^2 + y^2 = 2 a x + 2 b y, R = hypot(a, b)), pT = 0.3 B R; NaN with
    fewer than 2 hits, inf when the hits are collinear with the origin.
    eta: asinh of the slope dz/dr of a straight-line fit of z against r (vertex-independent);
    mean z/r for one-hit tracks or hits at one radius. phi: azimuth of the hits' mean position.
    Returns a frame aligned with ``m.tracks``: track_id, pt, eta, phi.
    """
    h = m.hits
    if not {"x", "y", "z"} <= set(h.columns):
        raise DataError("track parameters need hit positions (give hits or a truth table with tx, ty, tz)")
    sel = h["track_id"].to_numpy() >= 0
    tid = h["track_id"].to_numpy()[sel]
    x = h["x"].to_numpy()[sel]
    y = h["y"].to_numpy()[sel]
    z = h["z"].to_numpy()[sel]
    t_ids = m.tracks["track_id"].to_numpy()
    inv = np.searchsorted(t_ids, tid)
    k = len(t_ids)

    def s(v):
        return np.bincount(inv, weights=v, minlength=k)

    pt_est = origin_circle_pt(inv, x, y, k, b_field)
    n = s(np.ones_like(x))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.hypot(x, y)
        mr, mz = s(r) / n, s(z) / n
        var_r = s(r * r) / n - mr * mr
        cov = s(r * z) / n - mr * mz
        slope = np.where(var_r > 1e-6 * np.maximum(mr * mr, 1.0), cov / var_r, s(z / np.maximum(r, 1e-9)) / n)
        eta = np.arcsinh(slope)
        ph = np.arctan2(s(y) / n, s(x) / n)
    return pd.DataFrame({"track_id": t_ids, "pt": pt_est, "eta": eta, "phi": ph})
