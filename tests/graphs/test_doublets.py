"""True doublets, doublet quantities and features, worked by hand on a 3-layer toy event."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trackstudy.errors import DataError
from trackstudy.graphs.doublets import (
    EDGE_FEATURES,
    NODE_FEATURES,
    curvature_pt,
    doublet_quantities,
    edge_features,
    hit_geometry,
    node_features,
    transform_features,
    true_doublets,
)


def toy_event():
    """Particle 1: straight radial track through barrel layers 0, 1, 2 (r = 32, 72, 116 mm) with an
    overlap hit on layer 1; particle 2: hits on layers 0 and 2 only; one noise hit."""
    hits = pd.DataFrame({
        "hit_id": [1, 2, 3, 4, 5, 6, 7],
        "x": [32.0, 72.0, 73.0, 116.0, 0.0, 0.0, 50.0],
        "y": [0.0, 0.0, 0.0, 0.0, 32.0, 116.0, 50.0],
        "z": [10.0, 20.0, 20.25, 31.0, 0.0, 0.0, 0.0],
        "volume_id": [8] * 7, "layer_id": [2, 4, 4, 6, 2, 6, 4], "module_id": [1, 2, 3, 4, 5, 6, 7]})
    truth = pd.DataFrame({"hit_id": hits["hit_id"], "particle_id": [1, 1, 1, 1, 2, 2, 0]})
    particles = pd.DataFrame({"particle_id": [1, 2], "vx": [0.0, 0.0], "vy": [0.0, 0.0], "vz": [2.0, 0.0],
                              "px": [3.0, 0.0], "py": [4.0, 0.5]})
    return hits, truth, particles


def test_true_doublets_join_consecutive_layer_groups():
    hits, truth, particles = toy_event()
    td = true_doublets(hits, truth, particles)
    pairs = sorted(zip(td["src"], td["dst"]))
    # particle 1: layer 0 -> both layer-1 hits (overlap) -> layer 2; particle 2: layer 0 -> layer 2 (a gap)
    assert pairs == [(0, 1), (0, 2), (1, 3), (2, 3), (4, 5)]
    pt = dict(zip(zip(td["src"], td["dst"]), td["pt"]))
    assert pt[(0, 1)] == pytest.approx(5.0) and pt[(4, 5)] == pytest.approx(0.5)


def test_doublet_quantities_by_hand():
    hits, _, _ = toy_event()
    g = hit_geometry(hits)
    assert g["layer"].tolist() == [0, 1, 1, 2, 0, 2, 1]
    q = doublet_quantities(g, np.array([0, 4]), np.array([1, 5]))
    # hits 0 -> 1: z = 10 at r = 32, z = 20 at r = 72: slope 0.25, z0 = 10 - 32 * 0.25 = 2
    assert q["z0"][0] == pytest.approx(2.0)
    assert q["dphi"][0] == pytest.approx(0.0) and q["curvature"][0] == pytest.approx(0.0)
    assert q["deta"][0] == pytest.approx(np.arcsinh(20 / 72) - np.arcsinh(10 / 32))
    # a circle of radius 1000 mm through the origin: curvature 1e-3 / mm, pT = 0.6 GeV
    R, phis = 1000.0, np.array([0.05, 0.1])
    xy = np.stack([R * np.sin(phis * 2) / 1, R * (1 - np.cos(phis * 2))], 1)  # points on the circle
    circ = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], "z": [0.0, 0.0], "volume_id": [8, 8], "layer_id": [2, 4]})
    qc = doublet_quantities(hit_geometry(circ), np.array([0]), np.array([1]))
    assert qc["curvature"][0] == pytest.approx(1e-3, rel=1e-9)
    assert curvature_pt(qc["curvature"])[0] == pytest.approx(0.6)


def test_features_shapes_and_errors():
    hits, truth, particles = toy_event()
    g = hit_geometry(hits)
    assert node_features(g).shape == (7, len(NODE_FEATURES))
    ef = edge_features(g, np.array([0, 1]), np.array([1, 3]))
    assert ef.shape == (2, len(EDGE_FEATURES)) and ef.dtype == np.float32 and np.isfinite(ef).all()
    with pytest.raises(DataError, match="event truth: column 'particle_id' is missing"):
        true_doublets(hits, truth.drop(columns="particle_id"), particles)
    with pytest.raises(DataError, match="hits: column 'z' is missing"):
        hit_geometry(hits.drop(columns="z"))


def test_transform_features_by_hand():
    # a hit at phi = 0 (sin 0, cos 1) turned by 90 degrees lies at phi = 90 (sin 1, cos 0); mirrored
    # y -> -y it lies at phi = -90; delta-phi and the signed curvature change sign with the mirror
    x = np.zeros((1, len(NODE_FEATURES)), np.float32)
    x[0, NODE_FEATURES.index("cos_phi")] = 1.0
    x[0, NODE_FEATURES.index("r")] = 0.5
    e = np.arange(len(EDGE_FEATURES), dtype=np.float32)[None] + 1.0
    xr, er = transform_features(x, e, np.pi / 2)
    assert xr[0, NODE_FEATURES.index("sin_phi")] == pytest.approx(1.0)
    assert xr[0, NODE_FEATURES.index("cos_phi")] == pytest.approx(0.0, abs=1e-7)
    assert xr[0, NODE_FEATURES.index("r")] == 0.5 and np.array_equal(er, e)
    xm, em = transform_features(x, e, np.pi / 2, mirror=True)
    assert xm[0, NODE_FEATURES.index("sin_phi")] == pytest.approx(-1.0)
    flipped = [EDGE_FEATURES.index("dphi"), EDGE_FEATURES.index("curvature")]
    assert np.array_equal(em[0, flipped], -e[0, flipped])
    assert np.array_equal(np.delete(em, flipped, 1), np.delete(e, flipped, 1))
    assert x[0, NODE_FEATURES.index("cos_phi")] == 1.0  # the input is not changed


@pytest.mark.parametrize("mirror", [False, True])
def test_transform_features_equal_those_of_the_transformed_event(mirror):
    torch = pytest.importorskip("torch")
    hits, _, _ = toy_event()
    src, dst = np.array([0, 0, 1, 2, 4, 6]), np.array([1, 2, 3, 3, 5, 3])
    g = hit_geometry(hits)
    a = 0.7
    moved = hits.copy()
    moved["x"] = np.cos(a) * hits["x"] - np.sin(a) * hits["y"]
    moved["y"] = np.sin(a) * hits["x"] + np.cos(a) * hits["y"]
    if mirror:
        moved["y"] = -moved["y"]
    gm = hit_geometry(moved)
    want_x, want_e = node_features(gm), edge_features(gm, src, dst)
    got_x, got_e = transform_features(node_features(g), edge_features(g, src, dst), a, mirror)
    np.testing.assert_allclose(got_x, want_x, atol=1e-6)
    np.testing.assert_allclose(got_e, want_e, atol=1e-5)
    tx, te = transform_features(torch.from_numpy(node_features(g)), torch.from_numpy(edge_features(g, src, dst)), a, mirror)
    assert isinstance(tx, torch.Tensor) and np.allclose(tx.numpy(), want_x, atol=1e-6) and np.allclose(te.numpy(), want_e, atol=1e-5)
