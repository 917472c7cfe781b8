"""Locality clustering in torch, on the device where the hits are: the projection and the ``grid``
and ``window`` methods of :mod:`trackstudy.locality.clustering`, with the same cluster labels.

Same inputs (hit x, y, z in mm), parameters (:func:`~trackstudy.locality.clustering.resolve_params`,
per-region defaults in ``METHODS``) and label convention (consecutive labels >= 0, barrel first,
then the z < 0 and z > 0 endcap planes, labels in order of first appearance within a surface) as
:func:`trackstudy.locality.clustering.cluster_xyz`; the arithmetic is the same float64 arithmetic,
so the labels are equal (tests compare them on simulated and real events).

``grid`` is a handful of element-wise operations and one ``torch.unique``: on a GPU the event never
leaves the device. ``window`` is greedy (each window takes the free hits its seed leaves), so its
seeds run one after the other: a Python loop of a few small tensor operations per cluster, each
window search restricted to the hits within one window width in u (sorted once). It gives the
labels on the device, not speed. The vertex-z refinement (``vertex_scan``) and the other methods
stay on the CPU (:data:`TORCH_METHODS` lists what runs here).
"""

from __future__ import annotations

import torch

from trackstudy.errors import ConfigError, DataError
from trackstudy.locality.clustering import GridParams, WindowParams, resolve_params, vertex_scan_regions
from trackstudy.locality.projection import BARREL, ENDCAP_NEG, ENDCAP_POS, Surfaces

#: Clustering methods computed in torch.
TORCH_METHODS = ("grid", "window")


def project_torch(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor,
                  surfaces: Surfaces | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(surface int8, u, v)`` (N,) of hits (mm) projected from the origin, as
    :func:`trackstudy.locality.projection.project` with ``z0 = 0``: float64 on the hits' device."""
    surfaces = surfaces or Surfaces()
    x, y, z = (torch.as_tensor(a).to(torch.float64) for a in (x, y, z))
    if not bool(torch.isfinite(x).all() & torch.isfinite(y).all() & torch.isfinite(z).all()):
        raise DataError("hit coordinates must be finite (x, y, z)")
    r = torch.hypot(x, y)
    at_vertex = (r == 0) & (z == 0)
    if bool(at_vertex.any()):
        i = int(at_vertex.nonzero()[0])
        raise DataError(f"hit row {i} lies at the vertex (0, 0, 0.0): no direction to project along")
    zc = z * (surfaces.radius / r)  # +-inf on the beam line
    u = surfaces.radius * torch.atan2(y, x)
    barrel = zc.abs() <= surfaces.z_plane
    sign = torch.where(z >= 0, 1.0, -1.0).to(torch.float64)
    t = (sign * surfaces.z_plane) / z
    u = torch.where(barrel, u, x * t)
    v = torch.where(barrel, zc, y * t)
    surface = torch.where(barrel, BARREL, torch.where(sign > 0, ENDCAP_POS, ENDCAP_NEG)).to(torch.int8)
    return surface, u, v


def first_seen_order(labels: torch.Tensor) -> torch.Tensor:
    """Labels renumbered 0.. in order of first appearance (as the CPU methods' ``_first_seen_order``)."""
    if labels.numel() == 0:
        return labels.to(torch.int64)
    _, inv = torch.unique(labels, return_inverse=True)
    first = torch.full((int(inv.max()) + 1,), labels.numel(), dtype=torch.int64, device=labels.device)
    first.scatter_reduce_(0, inv, torch.arange(labels.numel(), device=labels.device), reduce="amin")
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(first.numel(), device=labels.device)
    return rank[inv]


def grid_labels_torch(u: torch.Tensor, v: torch.Tensor, params: GridParams, period: float | None = None) -> torch.Tensor:
    """Grid window on one surface's (u, v) (mm, v already scaled): one cluster per occupied cell."""
    if u.numel() == 0:
        return torch.zeros(0, dtype=torch.int64, device=u.device)
    if period is None:
        cu = torch.floor(u / params.cell_u - params.offset_u).to(torch.int64)
    else:
        n_cells = max(1, int(round(period / params.cell_u)))
        width = period / n_cells
        cu = torch.floor((u + period / 2) / width - params.offset_u).to(torch.int64) % n_cells
    cv = torch.floor(v / params.cell_v - params.offset_v).to(torch.int64)
    cu = cu - cu.min()
    cv = cv - cv.min()
    _, labels = torch.unique(cu * (int(cv.max()) + 1) + cv, return_inverse=True)
    return first_seen_order(labels)


def _window_occupancy(u_sorted, v_sorted, pu, pv, p, lo, hi):
    """Hits within the max-norm unit window of each point (pu, pv) (scaled units, u periodic with p)."""
    counts = torch.zeros(pu.numel(), dtype=torch.int64, device=pu.device)
    for s in range(0, pu.numel(), 2048):  # rows of points against their u-band
        a, b = lo[s:s + 2048], hi[s:s + 2048]
        width = int((b - a).max()) if a.numel() else 0
        if width <= 0:
            continue
        idx = a[:, None] + torch.arange(width, device=pu.device)[None, :]
        ok = idx < b[:, None]
        idx = idx % u_sorted.numel()
        d_u = _periodic_abs(u_sorted[idx] - pu[s:s + 2048, None], p)
        d_v = (v_sorted[idx] - pv[s:s + 2048, None]).abs()
        counts[s:s + 2048] = (ok & (d_u <= 1.0) & (d_v <= 1.0)).sum(dim=1)
    return counts


def _periodic_abs(d: torch.Tensor, p: float | None) -> torch.Tensor:
    """|d| with a periodic coordinate's wrap (the KD-tree's: d - p above p/2, d + p below -p/2)."""
    if p is None:
        return d.abs()
    d = torch.where(d > p / 2, d - p, torch.where(d < -p / 2, d + p, d))
    return d.abs()


def window_labels_torch(u: torch.Tensor, v: torch.Tensor, params: WindowParams,
                        period: float | None = None) -> torch.Tensor:
    """Iterative windowing on one surface's (u, v) (mm, v already scaled), as
    :func:`trackstudy.locality.clustering.window_labels`: seeds by decreasing window occupancy,
    ``n_iter`` re-centrings on the mean of the free hits of the window, then those hits are a cluster."""
    n = u.numel()
    dev = u.device
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=dev)
    su, sv = u / (params.width_u / 2), v / (params.width_v / 2)
    p = None if period is None else period / (params.width_u / 2)
    if p is not None:  # the CPU method's periodic KD-tree data: u wrapped into [0, p), v from its minimum
        su = torch.remainder(su + p / 2, p)
        su = torch.where(su >= p, torch.zeros_like(su), su)
        sv = sv - sv.min()
    order_u = torch.argsort(su, stable=True)
    u_sorted, v_sorted = su[order_u], sv[order_u]

    # periodic: the sorted u three times (shifted by -p, 0, +p), so that a band across the seam is
    # one range; a position in it is a hit's sorted position modulo n
    u_ext = u_sorted if p is None else torch.cat([u_sorted - p, u_sorted, u_sorted + p])

    def band(cu: torch.Tensor):
        """[lo, hi) ranges of (extended) sorted positions holding every hit whose u lies within 1 of cu."""
        lo = torch.searchsorted(u_ext, cu - 1.0 - 1e-9)
        hi = torch.searchsorted(u_ext, cu + 1.0 + 1e-9, right=True)
        return lo, hi

    lo, hi = band(su)
    occupancy = _window_occupancy(u_sorted, v_sorted, su, sv, p, lo, hi)
    order = torch.argsort(-occupancy, stable=True).tolist()  # decreasing occupancy, ties by input order
    free_sorted = torch.ones(n, dtype=torch.bool, device=dev)  # in u order
    labels = torch.full((n,), -1, dtype=torch.int64, device=dev)
    free = torch.ones(n, dtype=torch.bool, device=dev)  # in input order, mirrored on the host for seeds
    free_host = [True] * n
    centre = torch.empty(2, dtype=torch.float64, device=dev)
    k = 0
    for seed in order:
        if not free_host[seed]:
            continue
        centre[0], centre[1] = su[seed], sv[seed]
        members = torch.tensor([seed], device=dev)
        for it in range(params.n_iter + 1):
            a, b = (int(t) for t in band(centre[:1]))
            pos = torch.arange(a, b, device=dev) % n
            du = _periodic_abs(u_sorted[pos] - centre[0], p)
            inside = (du <= 1.0) & ((v_sorted[pos] - centre[1]).abs() <= 1.0) & free_sorted[pos]
            cand = order_u[pos[inside]]
            if cand.numel() == 0:
                break
            members = torch.sort(cand).values
            if it == params.n_iter:
                break
            off_u = su[members] - centre[0]
            if p is not None:  # the mean of periodic offsets, relative to the centre
                off_u = torch.remainder(off_u + p / 2, p) - p / 2
            new_u = centre[0] + off_u.mean()
            new_v = centre[1] + (sv[members] - centre[1]).mean()
            if p is not None:
                new_u = torch.remainder(new_u, p)
            centre[0], centre[1] = new_u, new_v
        labels[members] = k
        labels[seed] = k
        free[members] = False
        free[seed] = False
        free_sorted = free[order_u]
        for i in members.tolist():
            free_host[i] = False
        free_host[seed] = False
        k += 1
    return first_seen_order(labels)


_FUNCS = {"grid": grid_labels_torch, "window": window_labels_torch}


def cluster_xyz_torch(x, y, z, method: str = "grid", *, surfaces: Surfaces | None = None,
                      vertex_scan: bool | str = False, **params) -> torch.Tensor:
    """Locality cluster labels (N,) int64 of hits (mm) on their device, equal to
    ``cluster_xyz(x, y, z, method, **params)`` for the methods of :data:`TORCH_METHODS`."""
    if method not in TORCH_METHODS:
        raise ConfigError(f"clustering method {method!r} has no torch version; torch runs {', '.join(TORCH_METHODS)}")
    if vertex_scan_regions(vertex_scan):
        raise ConfigError(f"vertex_scan={vertex_scan!r}: the vertex-z refinement runs on the CPU only "
                          "(trackstudy.locality.clustering.cluster_xyz)")
    surfaces = surfaces or Surfaces()
    barrel_params, endcap_params = resolve_params(method, params)
    surface, u, v = project_torch(x, y, z, surfaces)
    labels = torch.empty(u.numel(), dtype=torch.int64, device=u.device)
    offset = 0
    for s in (BARREL, ENDCAP_NEG, ENDCAP_POS):
        idx = (surface == s).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        prm = barrel_params if s == BARREL else endcap_params
        vs = v[idx] * prm.v_scale if prm.v_scale != 1.0 else v[idx]
        lab = _FUNCS[method](u[idx], vs, prm, surfaces.period if s == BARREL else None)
        labels[idx] = lab + offset
        offset += int(lab.max()) + 1
    return labels


__all__ = ["TORCH_METHODS", "cluster_xyz_torch", "first_seen_order", "grid_labels_torch", "project_torch",
           "window_labels_torch"]
