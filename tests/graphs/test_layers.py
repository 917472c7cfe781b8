"""Pixel layer adjacency from the detector geometry."""

from __future__ import annotations

import pandas as pd
import pytest

from trackstudy.errors import DataError
from trackstudy.graphs.layers import N_PIXEL_LAYERS, layer_pairs, pixel_layer_index


def test_layer_pairs_follow_the_geometry():
    pairs = {tuple(p) for p in layer_pairs(skip=False).tolist()}
    # barrel-barrel: 0 -> 1 -> 2 -> 3 (radii 32, 72, 116, 172 mm)
    assert {(0, 1), (1, 2), (2, 3)} <= pairs
    # barrel-endcap: a barrel layer to the first disk on each side (layer indices 4: z = -600, 5: z = +600)
    assert {(0, 4), (0, 5), (3, 4), (3, 5)} <= pairs
    # endcap-endcap: the next disk of the same side, never across sides, never back to the barrel
    assert {(4, 6), (5, 7), (14, 16), (15, 17)} <= pairs
    assert (4, 5) not in pairs and (6, 7) not in pairs
    assert all(a < b for a, b in pairs) and all(b < N_PIXEL_LAYERS for _, b in pairs)


def test_skip_and_same_layer_pairs():
    base = {tuple(p) for p in layer_pairs(skip=False).tolist()}
    skip = {tuple(p) for p in layer_pairs(skip=True).tolist()}
    same = {tuple(p) for p in layer_pairs(skip=False, same_layer=True).tolist()}
    assert base < skip and (0, 2) in skip and (4, 8) in skip and (4, 5) not in skip
    assert same - base == {(i, i) for i in range(N_PIXEL_LAYERS)}


def test_pixel_layer_index_and_errors():
    hits = pd.DataFrame({"volume_id": [8, 8, 7, 9], "layer_id": [2, 8, 14, 2]})
    assert pixel_layer_index(hits).tolist() == [0, 3, 4, 5]
    with pytest.raises(DataError, match="column volume_id, row 1: 13 is not a pixel volume"):
        pixel_layer_index(pd.DataFrame({"volume_id": [8, 13], "layer_id": [2, 2]}))
    with pytest.raises(DataError, match="column 'layer_id' is missing"):
        pixel_layer_index(pd.DataFrame({"volume_id": [8]}))
