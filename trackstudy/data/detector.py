"""The TrackML detector geometry, read from ``detectors.csv``.

Each row of ``detectors.csv`` is one planar silicon module: its volume, layer and module
ids, its centre (cx, cy, cz, mm), the rotation from local (u, v, w) to global (x, y, z)
coordinates (``rot_xu`` ... ``rot_zw``: global = centre + R @ local), its thickness
``module_t`` (mm), its trapezoid half-lengths (``module_minhu`` at v = -hv,
``module_maxhu`` at v = +hv, ``module_hv``; mm) and the readout pitch in u and v (mm).

Volumes are barrels (cylindrical layers: pixel 8, short strips 13, long strips 17) or
endcaps (disks: 7/9 pixel, 12/14 short strips, 16/18 long strips; lower id at z < 0).
:class:`Detector` adds a per-layer summary (cylinder radius and z range for barrel layers,
disk z and r range for endcap layers), a global layer index ordered from the beam line
outward (for "adjacent layers") and per-module lookups.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from trackstudy.config import DETECTORS_CSV, PIXEL_VOLUMES
from trackstudy.errors import DataError

#: Barrel volumes of the TrackML detector; every other volume is an endcap.
BARREL_VOLUMES = (8, 13, 17)
#: All volumes, the endcaps with z < 0 first.
ALL_VOLUMES = (7, 8, 9, 12, 13, 14, 16, 17, 18)

DETECTOR_COLUMNS = (
    "volume_id", "layer_id", "module_id", "cx", "cy", "cz",
    "rot_xu", "rot_xv", "rot_xw", "rot_yu", "rot_yv", "rot_yw", "rot_zu", "rot_zv", "rot_zw",
    "module_t", "module_minhu", "module_maxhu", "module_hv", "pitch_u", "pitch_v",
)

# Subdetector groups in the inside-out order used by layer_index: pixel, short strips, long strips.
_GROUPS = ((7, 8, 9), (12, 13, 14), (16, 17, 18))


def region_of(volume_id) -> str | np.ndarray:
    """``"barrel"`` or ``"endcap"`` for a volume id (scalar) or an array of them (array of str)."""
    v = np.asarray(volume_id)
    known = np.isin(v, ALL_VOLUMES)
    if not known.all():
        bad = v[~known].ravel()[0]
        raise DataError(f"volume_id {bad} is not a TrackML volume (expected one of {ALL_VOLUMES})")
    out = np.where(np.isin(v, BARREL_VOLUMES), "barrel", "endcap")
    return str(out) if out.ndim == 0 else out


@dataclass(frozen=True, eq=False)  # eq/hash by identity: the tables are DataFrames
class Detector:
    """The module table plus per-layer surfaces.

    modules: one row per module, the ``detectors.csv`` columns plus ``layer_index`` and
    ``region``; indexed 0..n-1 in file order (``module_row`` maps ids to rows).
    layers: one row per (volume_id, layer_id), ordered by ``layer_index`` with columns
    region, r (mean module-centre radius), r_min/r_max (extent of the module surfaces),
    z, z_min/z_max, n_modules.
    """

    modules: pd.DataFrame
    layers: pd.DataFrame
    source: Path | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> Detector:
        """Read ``detectors.csv[.gz]``; default: the copy shipped in the package.

        Cached per path: the returned tables are shared, treat them as read-only.
        """
        return _load_cached(str(Path(path).resolve()) if path is not None else str(DETECTORS_CSV))

    @classmethod
    def from_frame(cls, df: pd.DataFrame, source: Path | None = None) -> Detector:
        where = source or "detectors table"
        missing = [c for c in DETECTOR_COLUMNS if c not in df.columns]
        if missing:
            raise DataError(f"{where}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        df = df[list(DETECTOR_COLUMNS)].copy()
        for c in ("volume_id", "layer_id", "module_id"):
            df[c] = df[c].astype("int32")
        for c in DETECTOR_COLUMNS[3:]:
            df[c] = df[c].astype("float64")
            if not np.isfinite(df[c].to_numpy()).all():
                row = int(np.flatnonzero(~np.isfinite(df[c].to_numpy()))[0])
                raise DataError(f"{where}: column {c}, row {row}: not a finite number")
        unknown = ~df["volume_id"].isin(ALL_VOLUMES).to_numpy()
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            raise DataError(f"{where}: column volume_id, row {row}: {df['volume_id'].iloc[row]} is not a TrackML volume")
        dup = df.duplicated(["volume_id", "layer_id", "module_id"]).to_numpy()
        if dup.any():
            row = int(np.flatnonzero(dup)[0])
            raise DataError(f"{where}: row {row}: duplicate (volume_id, layer_id, module_id)")
        df["region"] = region_of(df["volume_id"].to_numpy())
        corners = _module_edge_points(df)  # (n, k, 3)
        r_pts = np.hypot(corners[..., 0], corners[..., 1])
        df["r_min"] = r_pts.min(axis=1)
        df["r_max"] = r_pts.max(axis=1)
        df["z_min"] = corners[..., 2].min(axis=1)
        df["z_max"] = corners[..., 2].max(axis=1)
        layers = _layer_table(df)
        key = dict(zip(zip(layers["volume_id"], layers["layer_id"]), layers["layer_index"]))
        df["layer_index"] = [key[(v, l)] for v, l in zip(df["volume_id"], df["layer_id"])]
        df["layer_index"] = df["layer_index"].astype("int32")
        return cls(df.reset_index(drop=True), layers, Path(source) if source else None)

    # ------------------------------------------------------------------ lookups
    @property
    def n_modules(self) -> int:
        return len(self.modules)

    @staticmethod
    def region_of(volume_id) -> str | np.ndarray:
        """``"barrel"`` or ``"endcap"`` (see module-level :func:`region_of`)."""
        return region_of(volume_id)

    def layer_index(self, volume_id, layer_id) -> int | np.ndarray:
        """Global layer index (0 = innermost) for (volume_id, layer_id) scalars or arrays.

        Order: pixel layers, then short-strip, then long-strip layers; inside a subdetector
        the barrel layers inside out, then the endcap disks by increasing |z| with the z < 0
        disk before its z > 0 twin. Consecutive indices are neighbours along a track inside a
        barrel or inside one endcap; across the barrel/endcap boundary use :meth:`adjacent_layers`.
        """
        v = np.asarray(volume_id, dtype=np.int64)
        lay = np.asarray(layer_id, dtype=np.int64)
        table = self._layer_lookup
        code = v * 1000 + lay
        pos = np.searchsorted(table[0], code)
        pos = np.clip(pos, 0, len(table[0]) - 1)
        ok = table[0][pos] == code
        if not np.all(ok):
            bad = np.flatnonzero(~np.atleast_1d(ok))[0]
            raise DataError(f"(volume_id {np.atleast_1d(v)[bad]}, layer_id {np.atleast_1d(lay)[bad]}) "
                            f"is not a layer of the detector")
        out = table[1][pos]
        return int(out) if out.ndim == 0 else out

    @property
    def _layer_lookup(self) -> tuple[np.ndarray, np.ndarray]:
        codes = self.layers["volume_id"].to_numpy(np.int64) * 1000 + self.layers["layer_id"].to_numpy(np.int64)
        order = np.argsort(codes)
        return codes[order], self.layers["layer_index"].to_numpy(np.int64)[order]

    def module_row(self, volume_id, layer_id, module_id) -> np.ndarray:
        """Row numbers in :attr:`modules` of (volume, layer, module) id triples (arrays)."""
        keys = _module_key(self.modules["volume_id"], self.modules["layer_id"], self.modules["module_id"])
        order = np.argsort(keys)
        q = _module_key(volume_id, layer_id, module_id)
        pos = np.clip(np.searchsorted(keys[order], q), 0, len(keys) - 1)
        rows = order[pos]
        bad = keys[rows] != q
        if np.any(bad):
            i = np.flatnonzero(np.atleast_1d(bad))[0]
            raise DataError(f"module (volume {np.atleast_1d(volume_id)[i]}, layer {np.atleast_1d(layer_id)[i]}, "
                            f"module {np.atleast_1d(module_id)[i]}) is not in the detector")
        return rows

    def module_info(self, hits: pd.DataFrame, columns=("module_t", "pitch_u", "pitch_v")) -> pd.DataFrame:
        """Per-hit module properties (default thickness and pitch) for a hits table."""
        rows = self.module_row(hits["volume_id"].to_numpy(), hits["layer_id"].to_numpy(),
                               hits["module_id"].to_numpy())
        return self.modules.iloc[rows][list(columns)].reset_index(drop=True)

    def rotations(self) -> np.ndarray:
        """Module rotation matrices, shape (n_modules, 3, 3): global = centre + R @ (u, v, w)."""
        return _rotations(self.modules)

    def centres(self) -> np.ndarray:
        return self.modules[["cx", "cy", "cz"]].to_numpy(np.float64)

    def to_global(self, rows, u, v, w=0.0) -> np.ndarray:
        """Global (x, y, z) of local module coordinates (mm); shape (n, 3)."""
        rows = np.asarray(rows)
        rot = self.rotations()[rows]
        loc = np.stack(np.broadcast_arrays(np.asarray(u, float), np.asarray(v, float), np.asarray(w, float)), -1)
        return self.centres()[rows] + np.einsum("nij,nj->ni", rot, loc)

    def to_local(self, rows, xyz) -> np.ndarray:
        """Local (u, v, w) of global points on modules ``rows``; shape (n, 3)."""
        rows = np.asarray(rows)
        rot = self.rotations()[rows]
        return np.einsum("nji,nj->ni", rot, np.asarray(xyz, float) - self.centres()[rows])

    def layer_of_hits(self, hits: pd.DataFrame) -> np.ndarray:
        """Global layer index of each hit."""
        return self.layer_index(hits["volume_id"].to_numpy(), hits["layer_id"].to_numpy())

    def adjacent_layers(self, layer_index: int) -> list[int]:
        """Layers a track can cross next after ``layer_index`` going outward: the next barrel layer
        and endcap disks of the same or next subdetector whose r range overlaps (geometric rule)."""
        lay = self.layers.set_index("layer_index")
        if layer_index not in lay.index:
            raise DataError(f"layer_index {layer_index} is not a layer (0..{len(lay) - 1})")
        me = lay.loc[layer_index]
        out = []
        for j, other in lay.iterrows():
            if j == layer_index:
                continue
            if me.region == "barrel":
                further = (other.region == "barrel" and other.r > me.r) or (
                    other.region == "endcap" and other.r_max > me.r and abs(other.z) > me.z_max - 1)
            else:
                further = (other.region == "endcap" and np.sign(other.z) == np.sign(me.z) and abs(other.z) > abs(me.z)
                           and other.r_max > me.r_min) or (other.region == "barrel" and other.r > me.r_max)
            if further:
                out.append(int(j))
        # keep the nearest candidates only: next barrel layer and the closest disk on each side
        nearest = []
        barrels = [j for j in out if lay.loc[j].region == "barrel"]
        if barrels:
            nearest.append(min(barrels, key=lambda j: lay.loc[j].r))
        for side in (-1, 1):
            disks = [j for j in out if lay.loc[j].region == "endcap" and np.sign(lay.loc[j].z) == side]
            if disks:
                nearest.append(min(disks, key=lambda j: (abs(lay.loc[j].z), lay.loc[j].r)))
        return sorted(nearest)

    def surfaces(self) -> pd.DataFrame:
        """The layer table (alias kept for readability in notebooks)."""
        return self.layers


def _module_key(v, lay, m) -> np.ndarray:
    return (np.asarray(v, np.int64) << 40) | (np.asarray(lay, np.int64) << 24) | np.asarray(m, np.int64)


def _rotations(df: pd.DataFrame) -> np.ndarray:
    return df[["rot_xu", "rot_xv", "rot_xw", "rot_yu", "rot_yv", "rot_yw", "rot_zu", "rot_zv", "rot_zw"]] \
        .to_numpy(np.float64).reshape(-1, 3, 3)


def _module_edge_points(df: pd.DataFrame, per_edge: int = 9) -> np.ndarray:
    """Points along each module's trapezoid outline (global mm), shape (n, 4 * per_edge, 3)."""
    hv = df["module_hv"].to_numpy()
    hu0 = df["module_minhu"].to_numpy()
    hu1 = df["module_maxhu"].to_numpy()
    t = np.linspace(0.0, 1.0, per_edge)
    # corners in local (u, v): (-hu0, -hv) (hu0, -hv) (hu1, hv) (-hu1, hv)
    cu = np.stack([-hu0, hu0, hu1, -hu1], 1)
    cv = np.stack([-hv, -hv, hv, hv], 1)
    us, vs = [], []
    for k in range(4):
        k2 = (k + 1) % 4
        us.append(cu[:, k, None] * (1 - t) + cu[:, k2, None] * t)
        vs.append(cv[:, k, None] * (1 - t) + cv[:, k2, None] * t)
    u = np.concatenate(us, 1)
    v = np.concatenate(vs, 1)
    rot = _rotations(df)
    c = df[["cx", "cy", "cz"]].to_numpy(np.float64)
    return c[:, None, :] + u[..., None] * rot[:, None, :, 0] + v[..., None] * rot[:, None, :, 1]


def _layer_table(df: pd.DataFrame) -> pd.DataFrame:
    rc = np.hypot(df["cx"], df["cy"])
    g = df.assign(rc=rc).groupby(["volume_id", "layer_id"], sort=True)
    layers = g.agg(
        n_modules=("module_id", "size"), r=("rc", "mean"), r_min=("r_min", "min"), r_max=("r_max", "max"),
        z=("cz", "mean"), z_min=("z_min", "min"), z_max=("z_max", "max"),
    ).reset_index()
    layers["region"] = region_of(layers["volume_id"].to_numpy())
    group = np.zeros(len(layers), int)
    for gi, vols in enumerate(_GROUPS):
        group[layers["volume_id"].isin(vols).to_numpy()] = gi
    is_endcap = (layers["region"] == "endcap").to_numpy()
    # sort key: subdetector, barrel before endcap, then radius (barrel) or |z| with z<0 first (endcap)
    key2 = np.where(is_endcap, np.abs(layers["z"]) + 1e-3 * (layers["z"] > 0), layers["r"])
    order = np.lexsort((key2, is_endcap, group))
    layers = layers.iloc[order].reset_index(drop=True)
    layers.insert(0, "layer_index", np.arange(len(layers), dtype=np.int32))
    layers["volume_id"] = layers["volume_id"].astype("int32")
    layers["layer_id"] = layers["layer_id"].astype("int32")
    return layers[["layer_index", "volume_id", "layer_id", "region", "n_modules", "r", "r_min", "r_max",
                   "z", "z_min", "z_max"]]


@lru_cache(maxsize=4)
def _load_cached(path: str) -> Detector:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file (expected a TrackML detectors.csv or detectors.csv.gz)")
    try:
        df = pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a data problem of that file
        raise DataError(f"{p}: not a readable CSV file ({type(exc).__name__}: {exc})") from None
    return Detector.from_frame(df, source=p)


def pixel_layers(detector: Detector) -> pd.DataFrame:
    """The layer table restricted to the pixel volumes."""
    return detector.layers[detector.layers["volume_id"].isin(PIXEL_VOLUMES)].reset_index(drop=True)
