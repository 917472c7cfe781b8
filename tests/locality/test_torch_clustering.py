"""trackstudy.locality.torch_clustering: the projection and the grid and window methods in torch give
the labels of trackstudy.locality.clustering (same labels, not only the same partition) on hand
cases, simulated events and the real events."""

import numpy as np
import pandas as pd
import pytest
import torch

from trackstudy.bench.latency import load_events, preset_model
from trackstudy.data.io import read_event
from trackstudy.data.simulate import SimulationConfig, simulate_event
from trackstudy.errors import ConfigError, DataError
from trackstudy.inference import cluster_hits, predict_event, select_pixel_hits, torch_clusterable
from trackstudy.locality.clustering import GridParams, cluster_xyz
from trackstudy.locality.projection import project
from trackstudy.locality.torch_clustering import (
    TORCH_METHODS,
    cluster_xyz_torch,
    first_seen_order,
    grid_labels_torch,
    project_torch,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _xyz(hits):
    return tuple(hits[c].to_numpy(np.float64) for c in ("x", "y", "z"))


def _same(x, y, z, method, **params):
    expected = cluster_xyz(x, y, z, method, **params)
    got = cluster_xyz_torch(*(torch.from_numpy(a) for a in (x, y, z)), method, **params)
    assert got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), expected)
    return expected


def test_projection_equals_numpy():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 100, 500), rng.normal(0, 100, 500)
    z = rng.normal(0, 800, 500)
    x[0] = y[0] = 0.0  # on the beam line: an endcap hit
    proj = project(x, y, z)
    surface, u, v = project_torch(*(torch.from_numpy(a) for a in (x, y, z)))
    np.testing.assert_array_equal(surface.numpy(), proj.surface)
    np.testing.assert_allclose(u.numpy(), proj.u, rtol=0, atol=1e-12)
    np.testing.assert_allclose(v.numpy(), proj.v, rtol=0, atol=1e-12)
    with pytest.raises(DataError, match="row 3 lies at the vertex"):
        project_torch(torch.tensor([1.0, 2, 3, 0]), torch.tensor([1.0, 2, 3, 0]), torch.tensor([1.0, 2, 3, 0]))


def test_first_seen_order_and_grid_hand_case():
    np.testing.assert_array_equal(first_seen_order(torch.tensor([7, 3, 7, 9, 3])).numpy(), [0, 1, 0, 2, 1])
    u = torch.tensor([1.0, 15.0, 17.0, 1.0], dtype=torch.float64)
    v = torch.tensor([0.0, 0.0, 0.0, 200.0], dtype=torch.float64)
    labels = grid_labels_torch(u, v, GridParams(cell_u=16, cell_v=160, offset_u=0.0))
    np.testing.assert_array_equal(labels.numpy(), [0, 0, 1, 2])


@pytest.mark.parametrize("method", TORCH_METHODS)
def test_phi_seam(method):
    # a track crossing phi = +-pi, and hits on both sides of the seam
    phi = np.array([np.pi - 0.01, -np.pi + 0.01, np.pi - 0.02, 0.3, -np.pi + 0.003])
    r = np.array([32.0, 72.0, 116.0, 32.0, 172.0])
    _same(r * np.cos(phi), r * np.sin(phi), np.array([10.0, 22, 36, 5, 50]), method)


@pytest.mark.parametrize("method", TORCH_METHODS)
@pytest.mark.parametrize("seed", [1, 2])
def test_simulated_events(method, seed):
    ev = simulate_event(SimulationConfig(pileup=20, pixel_only=True), rng=seed)
    labels = _same(*_xyz(ev.hits), method)
    assert labels.max() > 10
    other = {"cell_u": 9.0, "barrel_cell_v": 100.0} if method == "grid" else {"width_u": 10.0, "endcap_n_iter": 3}
    _same(*_xyz(ev.hits), method, **other)  # parameters away from the defaults


@pytest.mark.parametrize("method", TORCH_METHODS)
def test_real_mini_event(method, mini_dir):
    hits = read_event(mini_dir, parts=("hits",)).hits
    _same(*_xyz(hits[select_pixel_hits(hits)]), method)


def test_real_full_event_grid():
    _, hits = load_events("full", 1)[0]
    labels = _same(*_xyz(hits[select_pixel_hits(hits)]), "grid")
    assert len(labels) == 48006


@pytest.mark.slow
def test_real_full_event_window():
    _, hits = load_events("full", 1)[0]
    _same(*_xyz(hits[select_pixel_hits(hits)]), "window")


def test_refused():
    x = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ConfigError, match="'dbscan' has no torch version"):
        cluster_xyz_torch(x, x, x, "dbscan")
    with pytest.raises(ConfigError, match="vertex-z refinement runs on the CPU"):
        cluster_xyz_torch(x, x, x, "grid", vertex_scan=True)
    with pytest.raises(ConfigError, match="cell_q"):
        cluster_xyz_torch(x, x, x, "grid", cell_q=3)


@pytest.mark.parametrize("method", TORCH_METHODS)
def test_inference_clusters_on_the_device_with_the_same_result(method, mini_dir):
    hits = read_event(mini_dir, parts=("hits",)).hits
    loc = {"method": method, "params": {}, "vertex_scan": False}
    assert torch_clusterable(loc) and not torch_clusterable({**loc, "vertex_scan": True})
    np.testing.assert_array_equal(cluster_hits(hits, loc, device="cpu"), cluster_hits(hits, loc))
    model = preset_model("tiny", device="cpu")
    a, _ = predict_event(model, hits, locality=loc, pixel_only=True, device_clustering=True)
    b, _ = predict_event(model, hits, locality=loc, pixel_only=True, device_clustering=False)
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", TORCH_METHODS)
def test_cuda_labels_equal_the_cpu(method, mini_dir):
    for hits in (read_event(mini_dir, parts=("hits",)).hits, load_events("full", 1)[0][1]):
        hits = hits[select_pixel_hits(hits)]
        if method == "window" and len(hits) > 10_000:
            continue  # the seed loop: one event is enough
        x, y, z = _xyz(hits)
        got = cluster_xyz_torch(*(torch.from_numpy(a).cuda() for a in (x, y, z)), method)
        assert got.is_cuda
        np.testing.assert_array_equal(got.cpu().numpy(), cluster_xyz(x, y, z, method))
