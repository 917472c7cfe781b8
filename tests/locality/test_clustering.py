"""Clustering methods: label convention, phi wrap-around, hand-made cases, parameters."""

import numpy as np
import pytest
from sklearn.cluster import DBSCAN

from trackstudy.config import REAL_DATA_DIR
from trackstudy.data.io import read_event, select_volumes
from trackstudy.errors import ConfigError
from trackstudy.locality.clustering import (
    METHODS,
    DBSCANParams,
    DensityParams,
    GridParams,
    WindowParams,
    cluster,
    cluster_points,
    cluster_xyz,
    refine_endcaps,
    resolve_params,
)
from trackstudy.locality.projection import BARREL, ENDCAP_NEG, ENDCAP_POS, project, project_hits

R = 91.0
P = 2 * np.pi * R

# parameters under which two compact groups 30 mm apart separate and each stays whole
SMALL = {
    "dbscan": DBSCANParams(eps=2.0, min_samples=2, v_scale=1.0),
    "window": WindowParams(width_u=8.0, width_v=8.0, v_scale=1.0),
    "density": DensityParams(dc=2.0, delta_min=5.0, min_density=2, v_scale=1.0),
    "grid": GridParams(cell_u=8.0, cell_v=8.0, offset_u=0.5, offset_v=0.5, v_scale=1.0),
}


def _group(centre, rng, n=6, size=1.0):
    return np.asarray(centre) + rng.uniform(-size, size, size=(n, 2))


def _same_partition(a, b):
    """True when labels a and b split the points the same way (up to renaming)."""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("method", list(METHODS))
def test_two_groups_separate_and_stay_whole(method):
    rng = np.random.default_rng(1)
    pts = np.concatenate([_group([0.0, 0.0], rng), _group([30.0, 0.0], rng)])
    lab = cluster_points(pts, method, SMALL[method])
    assert lab.dtype == np.int64 and lab.min() >= 0
    assert len(set(lab[:6])) == 1 and len(set(lab[6:])) == 1
    assert lab[0] != lab[6]
    assert sorted(set(lab.tolist())) == list(range(len(set(lab.tolist()))))


@pytest.mark.parametrize("method", list(METHODS))
def test_track_straddling_phi_seam_stays_in_one_cluster(method):
    rng = np.random.default_rng(2)
    # a track whose hits sit on both sides of phi = +-pi (u = +-P/2), another one at phi = 0
    u = np.array([P / 2 - 1.5, P / 2 - 0.5, -P / 2 + 0.3, -P / 2 + 1.2, -P / 2 + 2.0])
    seam = np.column_stack([u, rng.uniform(-1, 1, len(u))])
    other = _group([0.0, 0.0], rng)
    pts = np.concatenate([seam, other])
    lab = cluster_points(pts, method, SMALL[method], period=P)
    assert len(set(lab[:5])) == 1, lab
    assert lab[0] not in set(lab[5:])
    # without periodicity the seam splits the track (the check above is not vacuous)
    if method != "grid":
        assert len(set(cluster_points(pts, method, SMALL[method])[:5])) == 2


def test_dbscan_periodic_matches_brute_force():
    rng = np.random.default_rng(3)
    pts = np.column_stack([rng.uniform(-P / 2, P / 2, 400), rng.uniform(-100, 100, 400)])
    eps = 6.0
    du = np.abs(pts[:, None, 0] - pts[None, :, 0])
    du = np.minimum(du, P - du)
    dist = np.hypot(du, pts[:, None, 1] - pts[None, :, 1])
    ref = DBSCAN(eps=eps, min_samples=2, metric="precomputed").fit_predict(dist)
    ref = np.where(ref < 0, 10_000 + np.arange(len(ref)), ref)
    lab = cluster_points(pts, "dbscan", DBSCANParams(eps=eps, min_samples=2, v_scale=1.0), period=P)
    assert _same_partition(lab, ref)
    # the seam matters in this sample: some periodic cluster crosses it
    plain = cluster_points(pts, "dbscan", DBSCANParams(eps=eps, min_samples=2, v_scale=1.0))
    assert not _same_partition(plain, ref)


def test_dbscan_size_cap_splits_only_oversized_clusters():
    # five dense groups (20 hits, spacing 0.2) chained by bridges of hits 1.0 apart
    groups = [np.column_stack([10.0 * g + 0.2 * np.arange(20) / 4, 0.2 * (np.arange(20) % 4)]) for g in range(5)]
    bridges = [np.column_stack([10.0 * g + 0.95 + np.arange(1, 10) * 1.0, np.zeros(9)]) for g in range(4)]
    pts = np.concatenate(groups + bridges)
    plain = cluster_points(pts, "dbscan", DBSCANParams(eps=1.5, min_samples=2, v_scale=1.0, max_size=0))
    assert len(set(plain.tolist())) == 1
    capped = cluster_points(pts, "dbscan", DBSCANParams(eps=1.5, min_samples=2, v_scale=1.0, max_size=25))
    assert np.bincount(capped).max() <= 25
    for g in range(5):
        assert len(set(capped[20 * g:20 * (g + 1)].tolist())) == 1
    assert len({capped[20 * g] for g in range(5)}) == 5
    # a cluster below the cap is left alone
    small = cluster_points(pts[:20], "dbscan", DBSCANParams(eps=1.5, min_samples=2, v_scale=1.0, max_size=25))
    assert len(set(small.tolist())) == 1


def test_dbscan_noise_becomes_singletons():
    pts = np.array([[0.0, 0.0], [0.5, 0.0], [50.0, 0.0], [100.0, 0.0]])
    lab = cluster_points(pts, "dbscan", DBSCANParams(eps=1.0, min_samples=2, v_scale=1.0))
    assert lab[0] == lab[1]
    assert len(set(lab.tolist())) == 3


def test_grid_hand_case():
    pts = np.array([[1.0, 1.0], [9.0, 2.0], [11.0, 1.0], [1.0, 12.0]])
    lab = cluster_points(pts, "grid", GridParams(cell_u=10.0, cell_v=10.0, offset_u=0.0, offset_v=0.0))
    assert lab.tolist() == [0, 0, 1, 2]
    # periodic: the circumference is cut into round(P / cell) equal cells
    lab = cluster_points(np.array([[-P / 2 + 0.1, 0.0], [P / 2 - 0.1, 0.0]]), "grid",
                         GridParams(cell_u=10.0, cell_v=10.0, offset_u=0.0), period=P)
    assert lab[0] != lab[1]  # offset 0 puts the seam on a cell edge


def test_density_peaks_hand_case():
    # a dense group at 0, a dense group at 20, and a lone hit at 50 (density 1 < min_density)
    a = np.array([[0.0, 0.0], [0.3, 0.0], [0.0, 0.3], [-0.3, 0.0], [1.5, 0.0]])
    b = a + [20.0, 0.0]
    pts = np.concatenate([a, b, [[50.0, 0.0]]])
    lab = cluster_points(pts, "density", DensityParams(dc=1.0, delta_min=5.0, min_density=2, v_scale=1.0))
    assert len(set(lab[:5])) == 1 and len(set(lab[5:10])) == 1
    assert len(set(lab.tolist())) == 3
    # a smaller delta_min leaves the outlying hit at 1.5 as its own centre
    lab = cluster_points(pts, "density", DensityParams(dc=1.0, delta_min=1.0, min_density=1, v_scale=1.0))
    assert lab[4] != lab[0]


def test_density_peaks_raises_k_when_needed():
    # 40 hits on a tight ring around a denser core: with k = 2 the nearest neighbours are not denser
    rng = np.random.default_rng(4)
    core = rng.normal(0, 0.05, size=(30, 2))
    ang = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    ring = np.column_stack([np.cos(ang), np.sin(ang)]) * 0.9
    pts = np.concatenate([core, ring])
    lab = cluster_points(pts, "density", DensityParams(dc=0.2, delta_min=2.0, min_density=1, k=2, v_scale=1.0))
    assert len(set(lab.tolist())) == 1


def test_window_hand_case():
    # the window (8 x 8) seeded on the dense group re-centres on it and takes all of it
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [3.5, 0.0], [12.0, 0.0]])
    lab = cluster_points(pts, "window", WindowParams(width_u=8.0, width_v=8.0, n_iter=2))
    assert len(set(lab[:5])) == 1 and lab[5] != lab[0]


def _three_surfaces_event(rng):
    # a few hits on each surface, spread so that every method finds several clusters
    n = 60
    phi = rng.uniform(-np.pi, np.pi, n)
    r = rng.choice([32.0, 72.0, 116.0, 172.0], n)
    xb, yb, zb = r * np.cos(phi), r * np.sin(phi), rng.uniform(-300, 300, n) * r / 172
    re = rng.uniform(30, 170, 2 * n)
    pe = rng.uniform(-np.pi, np.pi, 2 * n)
    ze = np.concatenate([rng.uniform(800, 1500, n), -rng.uniform(800, 1500, n)])
    ze = ze * np.maximum(1.0, re / 91.0)
    return (np.concatenate([xb, re * np.cos(pe)]), np.concatenate([yb, re * np.sin(pe)]),
            np.concatenate([zb, ze]))


@pytest.mark.parametrize("method", list(METHODS))
def test_label_convention_across_surfaces(method):
    rng = np.random.default_rng(5)
    x, y, z = _three_surfaces_event(rng)
    proj = project(x, y, z)
    assert set(proj.surface.tolist()) == {BARREL, ENDCAP_NEG, ENDCAP_POS}
    lab = cluster(proj, method)
    assert lab.dtype == np.int64 and len(lab) == len(x) and lab.min() >= 0
    assert np.array_equal(np.unique(lab), np.arange(lab.max() + 1))
    # no cluster spans two surfaces, and labels are ordered barrel < endcap z<0 < endcap z>0
    for s in (BARREL, ENDCAP_NEG, ENDCAP_POS):
        assert not set(lab[proj.surface == s]) & set(lab[proj.surface != s])
    assert lab[proj.surface == BARREL].max() < lab[proj.surface == ENDCAP_NEG].min()
    assert lab[proj.surface == ENDCAP_NEG].max() < lab[proj.surface == ENDCAP_POS].min()
    assert np.array_equal(cluster_xyz(x, y, z, method), lab)


def test_resolve_params():
    b, e = resolve_params("dbscan", {"eps": "3", "endcap_eps": 1.25, "barrel_min_samples": "4"})
    assert (b.eps, e.eps, b.min_samples, e.min_samples) == (3.0, 1.25, 4, METHODS["dbscan"].endcap.min_samples)
    b, e = resolve_params("grid", {})
    assert b == METHODS["grid"].barrel and e == METHODS["grid"].endcap
    with pytest.raises(ConfigError, match="unknown dbscan parameter 'epsilon'"):
        resolve_params("dbscan", {"epsilon": 1})
    with pytest.raises(ConfigError, match="expected a number"):
        resolve_params("dbscan", {"eps": "wide"})
    with pytest.raises(ConfigError, match="positive"):
        resolve_params("window", {"width_u": -1})
    with pytest.raises(ConfigError, match="integer"):
        resolve_params("dbscan", {"min_samples": 2.5})
    with pytest.raises(ConfigError, match="unknown clustering method"):
        resolve_params("kmeans", {})
    with pytest.raises(ConfigError, match="offset_u"):
        resolve_params("grid", {"offset_u": 1.5})


def test_v_scale_changes_the_metric():
    pts = np.array([[0.0, 0.0], [0.0, 10.0]])
    assert len(set(cluster_points(pts, "dbscan", DBSCANParams(eps=2.0, v_scale=1.0)).tolist())) == 2
    assert len(set(cluster_points(pts, "dbscan", DBSCANParams(eps=2.0, v_scale=0.1)).tolist())) == 1


def test_refine_endcaps_reprojects_from_the_best_vertex():
    # two straight endcap tracks from z0 = +40 mm, far apart in phi
    z = np.array([600.0, 700.0, 820.0, 960.0, 1100.0, 1300.0, 1500.0])
    xs, ys, zs = [], [], []
    for ang in (0.3, 2.0):
        r = (z - 40.0) * 0.06
        xs.append(r * np.cos(ang)); ys.append(r * np.sin(ang)); zs.append(z)
    x, y, zz = map(np.concatenate, (xs, ys, zs))
    proj = project(x, y, zz)
    _, endcap = resolve_params("dbscan", {})
    lab = cluster(proj, "dbscan", endcap_eps=3.0)
    new, refined = refine_endcaps(proj, lab, "dbscan", endcap, z_candidates=np.arange(-100, 101, 10.0))
    assert np.allclose(refined.z0, 40.0)
    assert np.ptp(refined.u[:7]) == pytest.approx(0.0, abs=1e-9)
    assert len(set(new[:7])) == 1 and new[0] != new[7]
    assert np.array_equal(np.unique(new), np.arange(new.max() + 1))


@pytest.mark.parametrize("method", list(METHODS))
def test_real_mini_event(method):
    ev = select_volumes(read_event(REAL_DATA_DIR / "mini"))
    proj = project_hits(ev.hits)
    lab = cluster(proj, method, vertex_scan=(method == "dbscan"))
    assert len(lab) == len(ev.hits) == 2783
    assert np.array_equal(np.unique(lab), np.arange(lab.max() + 1))
    # clusters are far fewer than hits and much smaller than the event
    assert 10 < lab.max() + 1 < len(lab)
    assert np.bincount(lab).max() < 0.2 * len(lab)


def test_cluster_rejects_non_projection():
    with pytest.raises(ConfigError, match="Projection"):
        cluster(np.zeros((3, 2)))


def test_barrel_vertex_z_refinement_joins_track_fragments():
    # a straight barrel track from z0 = +60 mm: from the origin its hits spread over 2.3 * 60 mm
    # in z on the cylinder, so DBSCAN splits it; each fragment points back to z0 = 60, and after
    # reprojection from there the track is one point and one cluster
    from trackstudy.locality.clustering import refine_vertex_z, vertex_scan_regions

    r = np.array([32.0, 32.5, 72.0, 73.0, 116.0, 117.0, 172.0, 173.0])  # double hits on each layer
    z = 60.0 + r * 0.5
    x, y = r * np.cos(1.0), r * np.sin(1.0)
    proj = project(x, y, z)
    assert np.ptp(proj.v) > 100
    b, e = resolve_params("dbscan", {"barrel_v_scale": 1.0, "barrel_eps": 3.0})
    lab = cluster(proj, "dbscan", barrel_v_scale=1.0, barrel_eps=3.0)
    assert len(set(lab.tolist())) == 4  # one fragment per layer
    new, refined = refine_vertex_z(proj, lab, "dbscan", b, e, regions=("barrel",),
                                   z_candidates=np.arange(-100.0, 101.0, 5.0))
    assert np.allclose(refined.z0, 60.0)
    assert np.ptp(refined.v) == pytest.approx(0.0, abs=1e-9)
    assert len(set(new.tolist())) == 1
    assert np.array_equal(cluster(proj, "dbscan", vertex_scan="barrel", barrel_v_scale=1.0, barrel_eps=3.0,
                                  z_candidates=np.arange(-100.0, 101.0, 5.0)), new)
    assert vertex_scan_regions(True) == ("endcap",) and vertex_scan_regions("all") == ("barrel", "endcap")
    with pytest.raises(ConfigError, match="vertex_scan"):
        vertex_scan_regions("sideways")
