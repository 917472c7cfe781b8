"""Pure array functions for hit positions and particle momenta.

Units: positions in mm, momenta in GeV, angles in radians. Every function accepts numpy
arrays (or scalars) and broadcasts; nothing is modified in place.
"""

from __future__ import annotations

import numpy as np

#: pT (GeV) = 0.299792458 * B (T) * R (m) for a unit charge.
C_LIGHT = 0.299792458


def r_xy(x, y):
    """Transverse distance from the beam line, sqrt(x^2 + y^2)."""
    return np.hypot(x, y)


def phi(x, y):
    """Azimuth in (-pi, pi]."""
    return np.arctan2(y, x)


def eta_from_xyz(x, y, z):
    """Pseudorapidity -ln tan(theta/2) = asinh(z / r); +-inf on the beam line."""
    r = np.hypot(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.arcsinh(np.divide(z, r))


#: Hits closer than this to the beam line (mm) take it as their radius in :func:`hit_eta_phi`.
MIN_R_MM = 1e-3


def hit_eta_phi(x, y, z, dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """(eta, phi) of hit positions as the models see them: asinh(z / max(r, MIN_R_MM)) and
    atan2(y, x), in ``dtype``; finite everywhere (a hit on the beam line gets a large |eta|, not inf)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    r = np.hypot(x, y)
    return np.arcsinh(z / np.maximum(r, MIN_R_MM)).astype(dtype), np.arctan2(y, x).astype(dtype)


def pt(px, py):
    """Transverse momentum (GeV)."""
    return np.hypot(px, py)


def p(px, py, pz):
    """Momentum magnitude (GeV)."""
    return np.sqrt(np.square(px) + np.square(py) + np.square(pz))


def eta_from_momentum(px, py, pz):
    """Pseudorapidity of a momentum vector, asinh(pz / pT); +-inf along the beam."""
    return eta_from_xyz(px, py, pz)


def wrap_phi(dphi):
    """Wrap an angle difference into [-pi, pi)."""
    return (np.asarray(dphi) + np.pi) % (2 * np.pi) - np.pi


def origin_circle_pt(group, x, y, n_groups: int | None = None, b_tesla: float = 2.0) -> np.ndarray:
    """pT (GeV) of each group of hits (e.g. a track) from the circle through the origin fitted to
    its hits in x-y (mm): algebraic least squares x^2 + y^2 = 2 a x + 2 b y, R = hypot(a, b),
    pT = 0.3 B R. NaN for a group with fewer than 2 hits, inf when its hits are collinear with
    the origin (a straight track). ``group`` (N,) int in 0..n_groups-1."""
    group = np.asarray(group, dtype=np.int64)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    k = int(group.max(initial=-1)) + 1 if n_groups is None else int(n_groups)

    def s(v):
        return np.bincount(group, weights=v, minlength=k)

    q = x * x + y * y
    sxx, sxy, syy, sxq, syq = s(x * x), s(x * y), s(y * y), s(x * q), s(y * q)
    det = sxx * syy - sxy * sxy
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (sxq * syy - syq * sxy) / (2 * det)
        b = (syq * sxx - sxq * sxy) / (2 * det)
        radius = np.where(det == 0, np.inf, np.hypot(a, b))
    radius = np.where(s(np.ones_like(x)) < 2, np.nan, radius)
    return C_LIGHT * b_tesla * radius / 1000.0
