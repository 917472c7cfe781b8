"""Pixel layer adjacency from the detector geometry: which layer a track can cross next.

Pixel layers are numbered 0..17 by :func:`pixel_layer_index` in the detector's inside-out order
(:meth:`trackstudy.data.detector.Detector.layer_index`: the 4 barrel layers by radius, then the 7
disks of each endcap by |z|, the z < 0 disk first). A pair (inner, outer) is a layer pair when a
track going outward can meet ``outer`` right after ``inner``: the next barrel layer, the nearest
disk on each side whose r range a track leaving the barrel layer can reach, the next disk of the
same endcap, and (``skip``) one layer further when a track misses a layer (gaps between modules).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trackstudy.config import PIXEL_VOLUMES
from trackstudy.data.detector import Detector, pixel_layers
from trackstudy.errors import DataError

__all__ = ["N_PIXEL_LAYERS", "layer_pairs", "pixel_layer_index"]

#: Pixel layers of the TrackML detector (4 barrel layers, 2 x 7 endcap disks).
N_PIXEL_LAYERS = 18


def pixel_layer_index(hits: pd.DataFrame, detector: Detector | None = None, *, source: str = "hits") -> np.ndarray:
    """Pixel layer index 0..17 (int64) of each hit (needs volume_id and layer_id, pixel volumes only)."""
    for col in ("volume_id", "layer_id"):
        if col not in hits.columns:
            raise DataError(f"{source}: column {col!r} is missing (needed for the layer of each hit)")
    vol = hits["volume_id"].to_numpy()
    bad = ~np.isin(vol, PIXEL_VOLUMES)
    if bad.any():
        raise DataError(f"{source}: column volume_id, row {int(np.flatnonzero(bad)[0])}: {vol[bad][0]} is not a "
                        f"pixel volume ({', '.join(map(str, PIXEL_VOLUMES))}); select the pixel hits first")
    det = detector or Detector.load()
    return np.asarray(det.layer_index(vol, hits["layer_id"].to_numpy()), dtype=np.int64).reshape(-1)


def layer_pairs(detector: Detector | None = None, *, skip: bool = True, same_layer: bool = False) -> np.ndarray:
    """(P, 2) int64 array of pixel layer pairs (inner, outer), sorted.

    skip: also pairs one layer further (a track that crossed a gap between modules).
    same_layer: also (L, L) pairs (two overlapping modules of one layer hit by the same track).
    """
    det = detector or Detector.load()
    pix = pixel_layers(det)
    # the detector's geometric rule applied to the pixel layers alone (a strip disk nearer than the
    # next pixel disk must not hide it); 18 layers: a loop over layers, not hits
    pixel = Detector(det.modules[det.modules["volume_id"].isin(PIXEL_VOLUMES)], pix, det.source)
    nxt = {int(i): pixel.adjacent_layers(int(i)) for i in pix["layer_index"]}
    pairs = {(i, j) for i, js in nxt.items() for j in js}
    if skip:
        pairs |= {(i, k) for i, js in nxt.items() for j in js for k in nxt[j]}
    if same_layer:
        pairs |= {(i, i) for i in nxt}
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
