"""Efficiencies and fake rates in bins of particle (or track) kinematics, with Clopper-Pearson intervals.

Input tables are the ``particles`` / ``tracks`` tables of :class:`trackstudy.metrics.matching.Matching`
(or several events' tables concatenated), so the binned numbers use exactly the same matching
as the headline numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trackstudy.errors import ConfigError, DataError
from trackstudy.metrics.matching import _check_cuts

#: Particle pT bin edges (GeV); pT above the last edge is folded into the last bin.
PT_EDGES = np.array([0.6, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0])
#: Pseudorapidity bin edges: 0.4 wide over [-4, 4].
ETA_EDGES = np.round(np.linspace(-4.0, 4.0, 21), 10)
#: Azimuth bin edges (radians), 12 bins.
PHI_EDGES = np.linspace(-np.pi, np.pi, 13)
#: Production-vertex z bin edges (mm); values outside are folded into the end bins.
VZ_EDGES = np.linspace(-150.0, 150.0, 13)

#: Per variable: (default edges, fold underflow into the first bin, fold overflow into the last bin).
BINNING = {
    "pt": (PT_EDGES, False, True),
    "eta": (ETA_EDGES, False, False),
    "phi": (PHI_EDGES, True, True),
    "vz": (VZ_EDGES, True, True),
}

EFFICIENCY_KINDS = {"dm": "dm_matched", "perfect": "perfect_matched", "lhc": "lhc_matched"}
TABLE_COLUMNS = ["low", "high", "centre", "n_total", "n_pass", "eff", "err_low", "err_high"]


def clopper_pearson(k, n, cl: float = 0.68) -> tuple[np.ndarray, np.ndarray]:
    """Central Clopper-Pearson interval (lower, upper) for k successes in n trials.

    Exact binomial interval from the beta distribution: lower = B^-1(alpha/2; k, n-k+1)
    (0 when k = 0), upper = B^-1(1-alpha/2; k+1, n-k) (1 when k = n), alpha = 1 - cl.
    NaN where n = 0. Arrays broadcast.
    """
    if not 0 < cl < 1:
        raise ConfigError(f"cl={cl!r}: the confidence level must be in (0, 1)")
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise DataError("clopper_pearson: need 0 <= k <= n")
    from scipy.stats import beta  # imported here: scipy.stats takes ~0.3 s to import

    alpha = 1.0 - cl
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, beta.ppf(alpha / 2, np.maximum(k, 1e-300), n - k + 1), 0.0)
        hi = np.where(k < n, beta.ppf(1 - alpha / 2, k + 1, np.maximum(n - k, 1e-300)), 1.0)
    lo = np.where(n > 0, lo, np.nan)
    hi = np.where(n > 0, hi, np.nan)
    return lo, hi


def _bin_index(values: np.ndarray, edges: np.ndarray, underflow: bool, overflow: bool) -> np.ndarray:
    """Bin of each value (-1 = outside); bins are [low, high), the last one closed."""
    nb = len(edges) - 1
    idx = np.searchsorted(edges, values, side="right") - 1
    idx[values == edges[-1]] = nb - 1
    if underflow:
        idx[values < edges[0]] = 0
    if overflow:
        idx[values > edges[-1]] = nb - 1  # +inf included
    idx[np.isnan(values)] = -1
    idx[(idx < 0) | (idx >= nb)] = -1
    return idx


def binned_ratio(values, passed, edges, *, underflow: bool = False, overflow: bool = False,
                 cl: float = 0.68) -> pd.DataFrame:
    """Fraction of ``passed`` in bins of ``values``, with Clopper-Pearson errors.

    Returns one row per bin: low, high, centre, n_total, n_pass, eff, err_low, err_high
    (eff - lower, upper - eff). Empty bins have NaN eff and errors. Values outside the edges
    are dropped unless folded (``underflow`` / ``overflow``); NaN values are dropped.
    """
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not np.all(np.diff(edges) > 0):
        raise ConfigError(f"bin edges {edges.tolist()}: need at least two strictly increasing edges")
    values = np.asarray(values, dtype=np.float64)
    passed = np.asarray(passed, dtype=bool)
    if values.shape != passed.shape:
        raise DataError(f"binned_ratio: values {values.shape} and passed {passed.shape} differ in shape")
    nb = len(edges) - 1
    idx = _bin_index(values, edges, underflow, overflow)
    inside = idx >= 0
    n_total = np.bincount(idx[inside], minlength=nb)
    n_pass = np.bincount(idx[inside], weights=passed[inside].astype(np.float64), minlength=nb).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        eff = np.where(n_total > 0, n_pass / np.maximum(n_total, 1), np.nan)
    lo, hi = clopper_pearson(n_pass, n_total, cl)
    return pd.DataFrame({
        "low": edges[:-1], "high": edges[1:], "centre": 0.5 * (edges[:-1] + edges[1:]),
        "n_total": n_total.astype(np.int64), "n_pass": n_pass, "eff": eff,
        "err_low": eff - lo, "err_high": hi - eff,
    })


def binned_efficiency(particles: pd.DataFrame, var: str = "pt", edges=None, *, kind: str = "dm",
                      pt_min: float = 0.9, min_hits: int = 3, eta_max: float = 4.0, region: str | None = None,
                      cl: float = 0.68) -> pd.DataFrame:
    """Efficiency of reconstructable particles in bins of ``var`` (pt, eta, phi, vz).

    particles: a Matching's particle table (or several concatenated). kind: dm, perfect or lhc.
    The particle selection is the reconstructable one (pT > pt_min, nhits >= min_hits,
    |eta| < eta_max, optionally one region), except that for ``var="pt"`` the pT cut is
    replaced by the bin range (edges from 0.6 GeV by default, overflow folded into the last bin).
    Returns the :func:`binned_ratio` table.
    """
    if kind not in EFFICIENCY_KINDS:
        raise ConfigError(f"kind={kind!r}: expected one of {', '.join(EFFICIENCY_KINDS)}")
    if var not in BINNING:
        raise ConfigError(f"var={var!r}: expected one of {', '.join(BINNING)}")
    if var not in particles.columns:
        raise DataError(f"particle table has no column {var!r}")
    _check_cuts(pt_min, min_hits, eta_max)
    default_edges, underflow, overflow = BINNING[var]
    edges = default_edges if edges is None else edges
    sel = (particles["nhits"].to_numpy() >= min_hits) & (np.abs(particles["eta"].to_numpy()) < eta_max)
    if var != "pt":
        sel &= particles["pt"].to_numpy() > pt_min
    if region is not None:
        if region not in ("barrel", "endcap"):
            raise ConfigError(f"region={region!r}: expected 'barrel', 'endcap' or None")
        sel &= particles["region"].to_numpy() == region
    values = particles[var].to_numpy(np.float64)[sel]
    passed = particles[EFFICIENCY_KINDS[kind]].to_numpy()[sel]
    return binned_ratio(values, passed, edges, underflow=underflow, overflow=overflow, cl=cl)


def binned_fake_rate(tracks: pd.DataFrame, var: str = "eta", edges=None, *, min_hits: int = 3,
                     region: str | None = None, cl: float = 0.68) -> pd.DataFrame:
    """Fake rate (tracks with >= min_hits hits and no double-majority match) in bins of the
    track's estimated ``var`` (pt, eta or phi; a tracks table with the columns of
    :func:`trackstudy.metrics.matching.track_parameters` merged in).
    The ``eff`` column holds the fake fraction. Returns the :func:`binned_ratio` table.
    """
    if var not in ("pt", "eta", "phi"):
        raise ConfigError(f"var={var!r}: the fake rate is binned in pt, eta or phi")
    if var not in tracks.columns:
        raise DataError(f"track table has no column {var!r} (merge trackstudy.metrics.track_parameters first)")
    default_edges, underflow, overflow = BINNING[var]
    edges = default_edges if edges is None else edges
    sel = tracks["nhits"].to_numpy() >= min_hits
    if region is not None:
        sel &= tracks["region"].to_numpy() == region
    values = tracks[var].to_numpy(np.float64)[sel]
    fake = ~tracks["dm"].to_numpy()[sel]
    return binned_ratio(values, fake, edges, underflow=underflow or var == "eta", overflow=overflow or var == "eta",
                        cl=cl)
