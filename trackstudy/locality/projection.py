"""Projection of hits onto the locality surfaces: a cylinder for the barrel, two planes for the endcaps.

Each hit is mapped along the straight line from a vertex ``(0, 0, z0)`` (the origin by default)
through the hit, onto whichever surface that line meets first (seed papers 002 and 004):

* the cylinder ``r = radius`` (default 91 mm) for the barrel, with coordinates
  ``(u, v) = (radius * phi, z_c)`` where ``z_c = z0 + (z - z0) * radius / r`` (mm);
  ``u`` is periodic with period ``2 * pi * radius``;
* the planes ``z = +-z_plane`` (default 920 mm) for the endcaps, with coordinates
  ``(u, v) = (x * t, y * t)``, ``t = (+-z_plane - z0) / (z - z0)`` (mm).

The line meets the cylinder first when ``|z_c| <= z_plane``. Hits of one straight track from
the vertex land on one point; curvature in the 2 T field and the vertex spread make each
track a small streak, which is what the clustering in :mod:`trackstudy.locality.clustering`
groups.

Endcap refinement (the vertex-z scan, :func:`vertex_z_scan`): a group of endcap hits is
reprojected from candidate vertex positions ``z0`` and the most compact ``z0`` is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trackstudy.errors import ConfigError, DataError

#: Surface codes used in :attr:`Projection.surface`.
BARREL, ENDCAP_NEG, ENDCAP_POS = 0, 1, 2
SURFACE_NAMES = {BARREL: "barrel", ENDCAP_NEG: "endcap z<0", ENDCAP_POS: "endcap z>0"}
#: Regions reported by the locality measurements: surface codes of each.
REGIONS = {"barrel": (BARREL,), "endcap": (ENDCAP_NEG, ENDCAP_POS), "all": (BARREL, ENDCAP_NEG, ENDCAP_POS)}


@dataclass(frozen=True)
class Surfaces:
    """The projection surfaces: barrel cylinder radius and endcap plane |z| (mm)."""

    radius: float = 91.0
    z_plane: float = 920.0

    def __post_init__(self) -> None:
        for name in ("radius", "z_plane"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ConfigError(f"Surfaces.{name} = {value!r}: must be a positive number of mm")

    @property
    def period(self) -> float:
        """Circumference of the barrel cylinder, the period of the ``u = R*phi`` coordinate (mm)."""
        return float(2 * np.pi * self.radius)


@dataclass
class Projection:
    """Projected hits: one entry per input hit, in input order.

    surface: int8 (n,) BARREL / ENDCAP_NEG / ENDCAP_POS.
    u, v: float64 (n,) surface coordinates in mm: (R*phi, z_c) on the cylinder, (x, y) on a plane.
    z0: float64 (n,) vertex z (mm) each hit was projected from.
    x, y, z: float64 (n,) the hits' positions (mm), kept for reprojection.
    """

    surface: np.ndarray
    u: np.ndarray
    v: np.ndarray
    z0: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    surfaces: Surfaces = field(default_factory=Surfaces)

    def __len__(self) -> int:
        return len(self.u)

    @property
    def period(self) -> float:
        return self.surfaces.period

    def region_mask(self, region: str) -> np.ndarray:
        """Boolean mask of the hits in ``region`` ("barrel", "endcap" or "all")."""
        if region not in REGIONS:
            raise ConfigError(f"unknown region {region!r}; expected one of {', '.join(REGIONS)}")
        return np.isin(self.surface, REGIONS[region])

    def points(self, surface: int) -> tuple[np.ndarray, np.ndarray]:
        """``(index, points)`` of the hits on one surface: indices into the input and an (m, 2) array (u, v)."""
        idx = np.flatnonzero(self.surface == surface)
        return idx, np.column_stack([self.u[idx], self.v[idx]])

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame with columns surface, region, u, v, z0 (one row per hit, input order)."""
        names = np.array(["barrel", "endcap", "endcap"])
        return pd.DataFrame({"surface": self.surface, "region": names[self.surface],
                             "u": self.u, "v": self.v, "z0": self.z0})


def _as_float_arrays(x, y, z) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrs = [np.asarray(a, dtype=np.float64).ravel() for a in (x, y, z)]
    if not (len(arrs[0]) == len(arrs[1]) == len(arrs[2])):
        raise DataError(f"x, y, z have different lengths ({len(arrs[0])}, {len(arrs[1])}, {len(arrs[2])})")
    for name, a in zip("xyz", arrs):
        bad = ~np.isfinite(a)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"hit coordinate {name}, row {i}: {a[i]} is not a finite number")
    return arrs[0], arrs[1], arrs[2]


def _z0_array(z0, n: int, z_plane: float) -> np.ndarray:
    z0 = np.broadcast_to(np.asarray(z0, dtype=np.float64), (n,)).copy() if np.ndim(z0) == 0 else \
        np.asarray(z0, dtype=np.float64).ravel()
    if len(z0) != n:
        raise ConfigError(f"z0 has {len(z0)} values for {n} hits (give one vertex z or one per hit)")
    bad = ~np.isfinite(z0) | (np.abs(z0) >= z_plane)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ConfigError(f"z0 = {z0[i]!r} (hit {i}): the vertex must lie between the endcap planes "
                          f"(|z0| < z_plane = {z_plane} mm)")
    return z0


def project_to_cylinder(x, y, z, radius: float = 91.0, z0=0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(radius * phi, z_c)`` (mm) where the line from (0, 0, z0) through each hit meets r = radius.

    phi is the hit's azimuth in (-pi, pi]; hits on the beam line (r = 0) give z_c = +-inf.
    """
    x, y, z = (np.asarray(a, dtype=np.float64) for a in (x, y, z))
    r = np.hypot(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        zc = z0 + (z - z0) * (radius / r)
    return radius * np.arctan2(y, x), zc


def project_to_plane(x, y, z, z_plane: float, z0=0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(x * t, y * t)`` (mm) where the line from (0, 0, z0) through each hit meets the plane z = z_plane.

    ``z_plane`` is signed (+920 or -920). ``t = (z_plane - z0) / (z - z0)``; a negative t means
    the plane lies behind the vertex as seen from the hit (the caller's job to avoid).
    """
    x, y, z = (np.asarray(a, dtype=np.float64) for a in (x, y, z))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (z_plane - z0) / (z - z0)
    return x * t, y * t


def project(x, y, z, *, surfaces: Surfaces | None = None, z0=0.0) -> Projection:
    """Project hits (mm) onto the barrel cylinder or an endcap plane, whichever the vertex line meets first.

    z0: vertex z (mm), one value or one per hit; must satisfy |z0| < surfaces.z_plane.
    Raises DataError for non-finite coordinates or a hit lying at the vertex itself.
    """
    surfaces = surfaces or Surfaces()
    x, y, z = _as_float_arrays(x, y, z)
    n = len(x)
    z0 = _z0_array(z0, n, surfaces.z_plane)
    r = np.hypot(x, y)
    at_vertex = (r == 0) & (z == z0)
    if at_vertex.any():
        i = int(np.flatnonzero(at_vertex)[0])
        raise DataError(f"hit row {i} lies at the vertex (0, 0, {z0[i]}): no direction to project along")
    u, zc = project_to_cylinder(x, y, z, surfaces.radius, z0)
    barrel = np.abs(zc) <= surfaces.z_plane  # NaN/inf (r = 0) -> False -> endcap
    surface = np.full(n, BARREL, dtype=np.int8)
    v = zc.copy()
    end = ~barrel
    if end.any():
        # r = 0 hits have zc = +-inf with the sign of z - z0; the plane on that side is the one met
        sign = np.where(z[end] - z0[end] >= 0, 1.0, -1.0)
        pu, pv = project_to_plane(x[end], y[end], z[end], sign * surfaces.z_plane, z0[end])
        u = u.copy()
        u[end], v[end] = pu, pv
        surface[end] = np.where(sign > 0, ENDCAP_POS, ENDCAP_NEG)
    return Projection(surface=surface, u=u, v=v, z0=z0, x=x, y=y, z=z, surfaces=surfaces)


def project_hits(hits: pd.DataFrame, *, surfaces: Surfaces | None = None, z0=0.0) -> Projection:
    """:func:`project` for a TrackML hits DataFrame (columns x, y, z in mm)."""
    missing = [c for c in ("x", "y", "z") if c not in hits.columns]
    if missing:
        raise DataError(f"hits table: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return project(hits["x"].to_numpy(), hits["y"].to_numpy(), hits["z"].to_numpy(), surfaces=surfaces, z0=z0)


def endcap_spread(x, y, z, z_plane: float, z_candidates) -> np.ndarray:
    """RMS distance (mm) of hits from their centroid on the plane z = z_plane, for each candidate vertex z.

    x, y, z: (m,) the hits of one group (mm); z_plane signed; z_candidates (k,) mm.
    Returns (k,); +inf for a candidate from which some hit would project behind the vertex.
    """
    x, y, z = (np.asarray(a, dtype=np.float64).ravel() for a in (x, y, z))
    zc = np.asarray(z_candidates, dtype=np.float64).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (z_plane - zc[:, None]) / (z[None, :] - zc[:, None])  # (k, m)
    pu, pv = x[None, :] * t, y[None, :] * t
    spread = np.sqrt(pu.var(axis=1) + pv.var(axis=1))
    spread[~(t > 0).all(axis=1) | ~np.isfinite(spread)] = np.inf
    return spread


def vertex_z_scan(x, y, z, z_candidates, *, z_plane: float | None = None,
                  surfaces: Surfaces | None = None) -> tuple[float, np.ndarray]:
    """Reproject a group of endcap hits from each candidate vertex z; keep the most compact one.

    x, y, z: (m,) hit positions (mm) of one cluster; z_candidates: (k,) vertex z values (mm).
    z_plane: the signed plane (default: +-surfaces.z_plane on the side of the hits' mean z).
    Returns ``(best_z0, spread)``: the candidate with the smallest RMS spread on the plane
    (ties: the candidate closest to 0, then the first) and the (k,) spreads (mm).
    """
    surfaces = surfaces or Surfaces()
    zc = np.asarray(z_candidates, dtype=np.float64).ravel()
    if len(zc) == 0:
        raise ConfigError("vertex_z_scan: z_candidates is empty")
    if z_plane is None:
        z_plane = float(np.sign(np.mean(z)) or 1.0) * surfaces.z_plane
    if not np.all(np.abs(zc) < abs(z_plane)):
        raise ConfigError(f"vertex_z_scan: candidates must satisfy |z0| < {abs(z_plane)} mm")
    spread = endcap_spread(x, y, z, z_plane, zc)
    if not np.isfinite(spread).any():
        return 0.0, spread
    best = np.flatnonzero(spread == spread.min())
    best = best[np.argmin(np.abs(zc[best]))]
    return float(zc[best]), spread
