"""Vertex views of the barrel: overlapping locality clusters for tracks from displaced vertices.

The barrel projection runs along the line from a vertex at z0 to each hit. A straight track
from a vertex at z_v lands on one point of the R = 91 mm cylinder only when z0 = z_v; from
the origin its hits at radius r land at z_v * (1 - R / r) + (its point), a streak of about
2.3 |z_v| over the pixel barrel's 32-172 mm, which splits the tracks of the luminous region's
tails (|z_v| > 6 mm holds a third of the barrel particles at mu = 200) over several clusters.
No single projection keeps every vertex's tracks together, so the barrel is projected from
several vertex z values, the *views*, each clustered on its own: every barrel hit belongs to
one cluster per view, and a track from z_v is compact in the view nearest z_v. The endcap
clusters (which the vertex-z scan already re-projects cluster by cluster) appear once.

:func:`view_clusters` returns the expanded hit list: one row per (barrel hit, view) and one per
endcap hit, each with its cluster label. The network runs over all rows at once (the packed
backend: each row attends within its cluster only); tracks are formed view by view and the
candidates resolved into one partition of the hits by
:func:`trackstudy.postprocessing.views.resolve_views`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trackstudy.data.io import select_volumes
from trackstudy.errors import ConfigError, DataError
from trackstudy.locality.clustering import cluster, cluster_points, resolve_params, vertex_scan_regions
from trackstudy.locality.measures import particle_containment
from trackstudy.locality.projection import BARREL, project, project_to_cylinder


@dataclass(frozen=True)
class ViewClusters:
    """Overlapping locality clusters of one event's hits.

    rows: int64 (M,) index of each row's hit in the input (every barrel hit once per view, then
        every endcap hit once, in input order within each block).
    labels: int64 (M,) cluster label of each row: consecutive, unique across views and surfaces.
    view: int64 (M,) the view of each row (index into ``vertices``), -1 for endcap rows.
    vertices: float64 (K,) the views' vertex z (mm).
    framed: bool (K,) whether each view is seen in its own frame (:meth:`frame_z`); None: every view.
    """

    rows: np.ndarray
    labels: np.ndarray
    view: np.ndarray
    vertices: np.ndarray
    framed: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def frame_z(self, z) -> np.ndarray:
        """(M,) z (mm) of each row in its view's frame: the hit's z (``z``: (N,) of the input hits)
        measured from the view's vertex, z - z_v for a barrel row, z unchanged for an endcap row.
        In its own view a track from z_v then looks like one from the origin, the tracks the
        network saw most in training (the luminous region's core)."""
        if not len(self.vertices):
            return np.asarray(z, dtype=np.float64)[self.rows]
        framed = np.ones(len(self.vertices), bool) if self.framed is None else np.asarray(self.framed, bool)
        v = np.maximum(self.view, 0)
        shift = np.where((self.view >= 0) & framed[v], self.vertices[v], 0.0)
        return np.asarray(z, dtype=np.float64)[self.rows] - shift

    def with_both_frames(self) -> ViewClusters:
        """Every barrel view twice: as it is (views 0..K-1, global frame) and in its own frame
        (views K..2K-1, the same vertices and clusters, new labels); the endcap rows once. The
        candidates of both are then pooled (``locality.view_frame: both``)."""
        bar = self.view >= 0
        k = len(self.vertices)
        end = ~bar
        offset = int(self.labels.max(initial=-1)) + 1
        labels = np.concatenate([self.labels[bar], self.labels[bar] + offset, self.labels[end]])
        labels = np.unique(labels, return_inverse=True)[1].ravel().astype(np.int64)  # consecutive again
        return ViewClusters(rows=np.concatenate([self.rows[bar], self.rows[bar], self.rows[end]]), labels=labels,
                            view=np.concatenate([self.view[bar], self.view[bar] + k, self.view[end]]),
                            vertices=np.concatenate([self.vertices, self.vertices]),
                            framed=np.r_[np.zeros(k, bool), np.ones(k, bool)])

    def view_rows(self, k: int) -> np.ndarray:
        """Indices (into the rows) of view ``k``: its barrel rows, then every endcap row."""
        return np.flatnonzero((self.view == k) | (self.view < 0))


def check_views(barrel_views) -> np.ndarray:
    """The ``barrel_views`` option as a float64 array of vertex z (mm); empty when off (None, [])."""
    if barrel_views is None or (not isinstance(barrel_views, str) and np.size(barrel_views) == 0):
        return np.zeros(0)
    try:
        z = np.asarray(barrel_views, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ConfigError(f"locality.barrel_views={barrel_views!r}: expected a list of vertex z values in mm, "
                          "e.g. [-15, -7.5, 0, 7.5, 15]") from None
    if not np.isfinite(z).all() or (np.abs(z) >= 500).any():
        raise ConfigError(f"locality.barrel_views={barrel_views!r}: vertex z values must be finite and within "
                          "+-500 mm (the luminous region is a few cm long)")
    if len(np.unique(z)) != len(z):
        raise ConfigError(f"locality.barrel_views={barrel_views!r}: the vertex z values must differ")
    return np.sort(z)


def check_view_scan(vertex_scan) -> None:
    """Refuse a ``vertex_scan`` that refines the barrel next to barrel views (the views replace it)."""
    if "barrel" in vertex_scan_regions(vertex_scan):
        raise ConfigError(f"locality.vertex_scan={vertex_scan!r} with barrel_views: the views replace the "
                          "barrel's vertex-z scan; use vertex_scan: endcap (or true)")


def parse_views(text: str, option: str = "--barrel-views") -> list[float]:
    """A command line's views: ``"-15,-7.5,0,7.5,15"`` -> [-15.0, -7.5, 0.0, 7.5, 15.0]; ``"none"``
    (or "") -> [] (views off). ConfigError naming ``option`` on anything else."""
    text = str(text).strip()
    if text.lower() in ("", "none", "off"):
        return []
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected vertex z values in mm separated by commas "
                          "(e.g. -15,-7.5,0,7.5,15), or none") from None
    try:
        return [float(v) for v in check_views(values)]
    except ConfigError as exc:
        raise ConfigError(f"{option} {text!r}: {exc}") from None


def view_clusters(x, y, z, method: str, *, barrel_views, vertex_scan: bool | str = False,
                  **params) -> ViewClusters:
    """Barrel clusters from every view's vertex z, endcap clusters once (see the module docstring).

    x, y, z: hit positions (mm). method, params, vertex_scan: as :func:`~trackstudy.locality.cluster`
    (the endcaps' vertex-z scan applies; the barrel's is what the views replace, so
    ``vertex_scan`` "barrel" or "all" is refused). barrel_views: vertex z values (mm).
    Which hits are barrel hits is decided by the projection from the origin.
    """
    vertices = check_views(barrel_views)
    if len(vertices) == 0:
        raise ConfigError("view_clusters: barrel_views is empty (give the vertex z values of the views, in mm)")
    check_view_scan(vertex_scan)
    barrel_params, _ = resolve_params(method, params)
    proj = project(x, y, z)
    bar = np.flatnonzero(proj.surface == BARREL)
    end = np.flatnonzero(proj.surface != BARREL)
    rows, labels, view = [], [], []
    offset = 0
    for k, zv in enumerate(vertices):
        if len(bar) == 0:
            break
        u, v = project_to_cylinder(proj.x[bar], proj.y[bar], proj.z[bar], proj.surfaces.radius, zv)
        lab = cluster_points(np.column_stack([u, v]), method, barrel_params, period=proj.period)
        rows.append(bar)
        labels.append(lab + offset)
        view.append(np.full(len(bar), k, dtype=np.int64))
        offset += int(lab.max()) + 1
    if len(end):
        # the endcap hits alone: each surface is clustered (and refined) on its own, so these are the
        # endcap clusters of the whole event, without clustering the barrel from the origin as well
        lab = cluster(project(proj.x[end], proj.y[end], proj.z[end]), method, vertex_scan=vertex_scan, **params)
        rows.append(end)
        labels.append(lab + offset)
        view.append(np.full(len(end), -1, dtype=np.int64))
    if not rows:
        return ViewClusters(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), vertices)
    return ViewClusters(np.concatenate(rows).astype(np.int64), np.concatenate(labels).astype(np.int64),
                        np.concatenate(view), vertices)


#: |vertex z| bins (mm) of :func:`view_containment`.
VZ_EDGES = (0.0, 2.0, 4.0, 6.0, 9.0, 14.0, np.inf)


def view_containment(event, method: str = "dbscan", *, barrel_views, vertex_scan: bool | str = True,
                     params: dict | None = None, pixel_only: bool = True, vz_edges=VZ_EDGES) -> pd.DataFrame:
    """How many barrel particles lie whole in one locality cluster, by |vertex z|: in the base
    partition (:func:`~trackstudy.locality.cluster`), in the view nearest the particle's vertex, and
    in any view. Needs truth (an :class:`~trackstudy.data.io.Event` with truth and particles with vz).

    Particles counted: pT > 0.9 GeV, >= 3 hits, most of them on the barrel cylinder (the
    reconstructible-ratio selection of :mod:`~trackstudy.locality.measures`). One row per |vz| bin
    (and "all"): n, contained_base, contained_home_view, contained_any_view (fractions)."""
    if event.truth is None or event.particles is None:
        raise DataError("view_containment: the event needs its truth and particles files")
    if "vz" not in event.particles.columns:
        raise DataError("view_containment: the particles table has no vz column")
    if pixel_only:
        event = select_volumes(event)
    hits = event.hits
    params = dict(params or {})
    x, y, z = (hits[c].to_numpy(np.float64) for c in ("x", "y", "z"))
    pid = event.truth.set_index("hit_id").loc[hits["hit_id"].to_numpy(), "particle_id"].to_numpy(np.int64)
    proj = project(x, y, z)
    base = cluster(proj, method, vertex_scan=vertex_scan, **params)
    views = view_clusters(x, y, z, method, barrel_views=barrel_views, vertex_scan=vertex_scan, **params)

    def contained(labels):
        t = particle_containment(labels, pid, event.particles, surface=proj.surface)
        return t.set_index("particle_id")

    ref = contained(base)
    ref = ref[ref["selected"] & (ref["region"] == "barrel")]
    per_view = []
    for k in range(len(views.vertices)):
        labels = np.empty(len(hits), dtype=np.int64)
        rows = views.view_rows(k)
        labels[views.rows[rows]] = views.labels[rows]
        per_view.append(contained(labels)["contained"].reindex(ref.index).to_numpy())
    per_view = np.stack(per_view) if per_view else np.zeros((0, len(ref)), dtype=bool)
    vz = event.particles.drop_duplicates("particle_id").set_index("particle_id")["vz"].reindex(ref.index).to_numpy()
    home = np.argmin(np.abs(vz[:, None] - views.vertices[None, :]), axis=1)
    table = pd.DataFrame({"abs_vz": np.abs(vz), "base": ref["contained"].to_numpy(),
                          "home": per_view[home, np.arange(len(ref))], "any": per_view.any(axis=0)})
    edges = np.asarray(vz_edges, dtype=np.float64)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = table[(table["abs_vz"] >= lo) & (table["abs_vz"] < hi)]
        rows.append(_containment_row(f"{lo:g}-{hi:g}" if np.isfinite(hi) else f"> {lo:g}", sel))
    rows.append(_containment_row("all", table))
    return pd.DataFrame(rows)


def _containment_row(name: str, sel: pd.DataFrame) -> dict:
    mean = (lambda col: float(sel[col].mean()) if len(sel) else float("nan"))
    return {"abs_vz_mm": name, "n": int(len(sel)), "contained_base": mean("base"),
            "contained_home_view": mean("home"), "contained_any_view": mean("any")}


__all__ = ["VZ_EDGES", "ViewClusters", "check_view_scan", "check_views", "parse_views", "view_clusters", "view_containment"]
