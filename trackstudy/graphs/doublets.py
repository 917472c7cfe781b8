"""Per-hit geometry, the true doublets of an event and the features of candidate doublets.

A doublet is an ordered hit pair (inner, outer) on a layer pair. The true doublets of an event
join consecutive hits of one particle: its hits are ordered by distance from its production
vertex and grouped by layer (hits on overlapping modules of one layer form one group); every hit
of group k is joined to every hit of group k + 1 (the ACORN definition: a track with an overlap
hit keeps every way through it).

Doublet quantities (positions in mm, angles in radians)::

    dphi       phi_out - phi_in wrapped to [-pi, pi)
    deta       eta_out - eta_in
    z0         z where the straight line through both hits in (r, z) meets r = 0
    curvature  signed curvature (1/mm) of the circle through the beam line (0, 0) and both hits
               in x-y: 1 / radius = pT / (0.3 B) with B = 2 T, so pT [GeV] = 0.6e-3 / |curvature|
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trackstudy.errors import DataError
from trackstudy.graphs.layers import N_PIXEL_LAYERS, pixel_layer_index
from trackstudy.kinematics import hit_eta_phi

__all__ = ["EDGE_CLIP", "EDGE_FEATURES", "EDGE_UNITS", "NODE_FEATURES", "NODE_UNITS", "curvature_pt", "doublet_quantities", "edge_features",
           "hit_geometry", "transform_features", "node_features", "true_doublets"]

#: Node (hit) features of the GNN, in column order.
NODE_FEATURES = ("r", "sin_phi", "cos_phi", "z", "eta", "layer")
#: Edge (doublet) features of the GNN, in column order.
EDGE_FEATURES = ("dr", "dphi", "dz", "deta", "z0", "curvature", "layer_in", "layer_out")
#: The unit of each node feature: feature = quantity / unit (r, z in mm; eta; the pixel layer index;
#: sin and cos phi as they are), so that each lies in about [-1, 1].
NODE_UNITS = {"r": 200.0, "sin_phi": 1.0, "cos_phi": 1.0, "z": 1500.0, "eta": 4.0, "layer": float(N_PIXEL_LAYERS - 1)}
#: The unit of each edge feature: feature = quantity / unit (dr, dz, z0 in mm; dphi in rad; deta;
#: curvature in 1/mm; the layer indices); z0 and curvature features are clipped to [-10, 10].
EDGE_UNITS = {"dr": 100.0, "dphi": 0.1, "dz": 500.0, "deta": 0.2, "z0": 200.0, "curvature": 1e-3,
              "layer_in": float(N_PIXEL_LAYERS - 1), "layer_out": float(N_PIXEL_LAYERS - 1)}
#: Bound of the clipped edge features (z0, curvature), in feature units.
EDGE_CLIP = 10.0
#: pT (GeV) x |curvature| (1/mm) in the 2 T field of the TrackML detector: pT = 0.3 B R.
PT_CURVATURE = 0.3 * 2.0 * 1e-3


def hit_geometry(hits: pd.DataFrame, *, source: str = "hits") -> dict[str, np.ndarray]:
    """x, y, z, r, phi, eta (float64) and layer (pixel layer index, int64) of each hit."""
    for col in ("x", "y", "z"):
        if col not in hits.columns:
            raise DataError(f"{source}: column {col!r} is missing")
    x, y, z = (hits[c].to_numpy(np.float64) for c in ("x", "y", "z"))
    eta, phi = hit_eta_phi(x, y, z, dtype=np.float64)
    return {"x": x, "y": y, "z": z, "r": np.hypot(x, y), "phi": phi,
            "eta": eta, "layer": pixel_layer_index(hits, source=source)}


def doublet_quantities(g: dict, src: np.ndarray, dst: np.ndarray) -> dict[str, np.ndarray]:
    """dphi, deta, z0, curvature (see the module docstring) of the doublets src -> dst (hit rows)."""
    dphi = np.mod(g["phi"][dst] - g["phi"][src] + np.pi, 2 * np.pi) - np.pi
    dr = g["r"][dst] - g["r"][src]
    dz = g["z"][dst] - g["z"][src]
    safe = np.where(np.abs(dr) < 1e-3, np.copysign(1e-3, dr + 1e-12), dr)
    z0 = g["z"][src] - g["r"][src] * dz / safe
    # circle through (0, 0), p1, p2: curvature = 2 (p1 x p2) / (|p1| |p2| |p2 - p1|)
    x1, y1, x2, y2 = g["x"][src], g["y"][src], g["x"][dst], g["y"][dst]
    chord = np.hypot(x2 - x1, y2 - y1)
    curv = 2.0 * (x1 * y2 - y1 * x2) / np.maximum(g["r"][src] * g["r"][dst] * chord, 1e-9)
    return {"dphi": dphi, "deta": g["eta"][dst] - g["eta"][src], "z0": z0, "curvature": curv, "dr": dr, "dz": dz}


def curvature_pt(curvature) -> np.ndarray:
    """Transverse momentum (GeV) of a curvature (1/mm) in the 2 T field."""
    return PT_CURVATURE / np.maximum(np.abs(np.asarray(curvature, np.float64)), 1e-12)


def node_features(g: dict) -> np.ndarray:
    """(N, 6) float32 hit features (:data:`NODE_FEATURES`), each scaled to about [-1, 1]."""
    u = NODE_UNITS
    return np.stack([g["r"] / u["r"], np.sin(g["phi"]), np.cos(g["phi"]), g["z"] / u["z"], g["eta"] / u["eta"],
                     g["layer"] / u["layer"]], axis=1).astype(np.float32)


def edge_features(g: dict, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(E, 8) float32 doublet features (:data:`EDGE_FEATURES`), each scaled to about [-1, 1]."""
    q = doublet_quantities(g, src, dst)
    u = EDGE_UNITS
    return np.stack([q["dr"] / u["dr"], q["dphi"] / u["dphi"], q["dz"] / u["dz"], q["deta"] / u["deta"],
                     np.clip(q["z0"] / u["z0"], -EDGE_CLIP, EDGE_CLIP),
                     np.clip(q["curvature"] / u["curvature"], -EDGE_CLIP, EDGE_CLIP),
                     g["layer"][src] / u["layer_in"], g["layer"][dst] / u["layer_out"]], axis=1).astype(np.float32)


def transform_features(x, edge_attr, angle: float, mirror: bool = False):
    """The node and edge features (:data:`NODE_FEATURES`, :data:`EDGE_FEATURES`) of the same event
    rotated about the beam axis by ``angle`` (rad) and then, with ``mirror``, reflected y -> -y: a
    symmetry of the detector and the solenoid field (a reflected helix bends the other way), so that
    it is a new, equally likely event for training (augmentation). Works on numpy arrays and torch
    tensors alike and returns new ones of the same kind.

    Only phi-dependent columns change: the rotation turns (sin phi, cos phi) by ``angle``; the
    mirror takes phi -> -phi, so sin phi, the doublet's delta-phi and its signed curvature change
    sign. r, z, eta, dr, dz, delta-eta, z0 and the layers stay. (The mirror z -> -z would swap the
    two endcaps' layer indices, so it is not offered.)"""
    x, e = x.clone() if hasattr(x, "clone") else np.array(x), \
        edge_attr.clone() if hasattr(edge_attr, "clone") else np.array(edge_attr)
    i_s, i_c = NODE_FEATURES.index("sin_phi"), NODE_FEATURES.index("cos_phi")
    c, s = float(np.cos(angle)), float(np.sin(angle))
    sin0, cos0 = x[:, i_s] * 1.0, x[:, i_c] * 1.0
    x[:, i_s] = sin0 * c + cos0 * s  # sin(phi + a)
    x[:, i_c] = cos0 * c - sin0 * s  # cos(phi + a)
    if mirror:
        x[:, i_s] = -x[:, i_s]
        for name in ("dphi", "curvature"):
            e[:, EDGE_FEATURES.index(name)] = -e[:, EDGE_FEATURES.index(name)]
    return x, e


def true_doublets(hits: pd.DataFrame, truth: pd.DataFrame, particles: pd.DataFrame, *,
                  layer: np.ndarray | None = None, source: str = "event") -> pd.DataFrame:
    """The true doublets of an event: DataFrame [src, dst (hit rows of ``hits``), particle_id, pt].

    hits: pixel hits (hit_id, x, y, z, volume_id, layer_id); truth: hit_id, particle_id (0 =
    noise); particles: particle_id, vx, vy, vz, px, py (for the ordering and pT). Noise hits and
    hits of particles missing from ``particles`` make no doublets.
    """
    for name, df, cols in (("truth", truth, ("hit_id", "particle_id")),
                           ("particles", particles, ("particle_id", "vx", "vy", "vz", "px", "py"))):
        for col in cols:
            if col not in df.columns:
                raise DataError(f"{source} {name}: column {col!r} is missing")
    if layer is None:
        layer = pixel_layer_index(hits, source=f"{source} hits")
    # vectorised with pandas: merge (row -> particle -> vertex), sort by (particle, distance), then
    # a merge of each layer group with the next one of the same particle
    h = pd.DataFrame({"hit_id": hits["hit_id"].to_numpy(), "row": np.arange(len(hits)), "layer": layer,
                      "x": hits["x"].to_numpy(np.float64), "y": hits["y"].to_numpy(np.float64),
                      "z": hits["z"].to_numpy(np.float64)})
    h = h.merge(truth[["hit_id", "particle_id"]], on="hit_id", how="inner")
    h = h[h["particle_id"] != 0]
    p = particles[["particle_id", "vx", "vy", "vz", "px", "py"]]
    h = h.merge(p, on="particle_id", how="inner")
    if h.empty:
        return pd.DataFrame({"src": np.zeros(0, np.int64), "dst": np.zeros(0, np.int64),
                             "particle_id": np.zeros(0, np.int64), "pt": np.zeros(0)})
    h["d2"] = (h["x"] - h["vx"]) ** 2 + (h["y"] - h["vy"]) ** 2 + (h["z"] - h["vz"]) ** 2
    h = h.sort_values(["particle_id", "d2"], kind="stable")
    pid = h["particle_id"].to_numpy()
    lay = h["layer"].to_numpy()
    new_group = np.ones(len(h), bool)
    new_group[1:] = (pid[1:] != pid[:-1]) | (lay[1:] != lay[:-1])
    first = np.ones(len(h), bool)
    first[1:] = pid[1:] != pid[:-1]
    # group number within the particle: cumulative group starts minus those before the particle's first hit
    gnum = np.cumsum(new_group)
    h["group"] = gnum - np.maximum.accumulate(np.where(first, gnum, 0))
    h["pt"] = np.hypot(h["px"], h["py"])
    a = h[["particle_id", "group", "row", "pt"]]
    b = a[["particle_id", "group", "row"]].assign(group=lambda d: d["group"] - 1)
    pairs = a.merge(b, on=["particle_id", "group"], suffixes=("_in", "_out"))
    return pd.DataFrame({"src": pairs["row_in"].to_numpy(np.int64), "dst": pairs["row_out"].to_numpy(np.int64),
                         "particle_id": pairs["particle_id"].to_numpy(np.int64),
                         "pt": pairs["pt"].to_numpy(np.float64)})
