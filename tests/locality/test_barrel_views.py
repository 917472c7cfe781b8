"""trackstudy.locality.views: barrel clusters from several vertex views, endcap clusters once."""

import numpy as np
import pytest

from trackstudy.errors import ConfigError
from trackstudy.locality.clustering import cluster_xyz
from trackstudy.locality.views import check_views, view_clusters

RADII = np.array([32.0, 72.0, 116.0, 172.0])  # the pixel barrel layers (mm)


def _displaced_track(z_vertex=10.0, cot_theta=0.3, phi=0.4):
    """Hits of a straight track from (0, 0, z_vertex) on the four barrel layers."""
    return RADII * np.cos(phi), RADII * np.sin(phi), z_vertex + cot_theta * RADII


def _with_endcap(x, y, z):
    # two hits far out in z: they meet the z = +920 mm plane first
    return (np.concatenate([x, [40.0, 60.0]]), np.concatenate([y, [0.0, 0.0]]),
            np.concatenate([z, [1200.0, 1800.0]]))


def test_a_displaced_track_is_whole_in_its_view_only():
    # from the origin the hits land at z_c = 10 (1 - 91 / r) + 91 * 0.3: -18.4, -2.6, 2.2, 4.7 mm
    # above 27.3; with v_scale 0.2 and eps 1 mm the first hit (3.2 mm from the next) is cut off
    x, y, z = _displaced_track()
    params = {"barrel_eps": 1.0, "barrel_min_samples": 1}
    base = cluster_xyz(x, y, z, "dbscan", **params)
    assert len(np.unique(base)) == 2
    vc = view_clusters(x, y, z, "dbscan", barrel_views=[10.0, 0.0], **params)
    assert vc.vertices.tolist() == [0.0, 10.0]  # sorted
    assert vc.rows.tolist() == [0, 1, 2, 3] * 2 and vc.view.tolist() == [0] * 4 + [1] * 4
    assert len(np.unique(vc.labels[vc.view == 0])) == 2  # the view from z = 0 splits it like the base
    assert len(np.unique(vc.labels[vc.view == 1])) == 1  # from z = 10 mm all four hits land on one point


def test_rows_labels_and_endcap_hits_once():
    x, y, z = _with_endcap(*_displaced_track())
    vc = view_clusters(x, y, z, "dbscan", barrel_views=[-7.5, 0.0, 7.5], vertex_scan=True)
    assert len(vc) == 3 * 4 + 2
    assert vc.rows.tolist() == [0, 1, 2, 3] * 3 + [4, 5] and vc.view.tolist()[-2:] == [-1, -1]
    # labels consecutive, and no cluster spans two views or a view and the endcap
    assert np.array_equal(np.unique(vc.labels), np.arange(vc.labels.max() + 1))
    for lab in np.unique(vc.labels):
        assert len(np.unique(vc.view[vc.labels == lab])) == 1
    # a view's rows: its barrel rows, then every endcap row
    assert vc.rows[vc.view_rows(2)].tolist() == [0, 1, 2, 3, 4, 5]
    # the endcap partition is the base clustering's
    base = cluster_xyz(x, y, z, "dbscan", vertex_scan=True)
    end = vc.view < 0
    assert len(np.unique(vc.labels[end])) == len(np.unique(base[4:]))
    pairs = np.unique(np.stack([vc.labels[end], base[vc.rows[end]]]), axis=1)  # the same grouping
    assert pairs.shape[1] == len(np.unique(base[4:]))


def test_frame_z_measures_barrel_rows_from_their_view():
    x, y, z = _with_endcap(*_displaced_track())  # barrel z: 19.6, 31.6, 44.8, 61.6; endcap 1200, 1800
    vc = view_clusters(x, y, z, "dbscan", barrel_views=[-7.5, 7.5], vertex_scan=True)
    fz = vc.frame_z(z)
    assert fz.shape == (len(vc),)
    assert np.allclose(fz[:4], [27.1, 39.1, 52.3, 69.1]) and np.allclose(fz[4:8], [12.1, 24.1, 37.3, 54.1])
    assert fz[8:].tolist() == [1200.0, 1800.0]  # endcap rows as they are
    # the track from z = 10 mm seen from the view at 7.5 mm: as if from 2.5 mm
    assert np.allclose(fz[4:8] - 0.3 * RADII, 2.5)


def test_both_frames_repeat_every_barrel_view_framed():
    x, y, z = _with_endcap(*_displaced_track())
    vc = view_clusters(x, y, z, "dbscan", barrel_views=[-7.5, 7.5], vertex_scan=True)
    both = vc.with_both_frames()
    assert len(both) == 2 * 8 + 2 and both.rows.tolist() == [0, 1, 2, 3] * 4 + [4, 5]
    assert both.view.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4 + [-1, -1]
    assert both.vertices.tolist() == [-7.5, 7.5, -7.5, 7.5] and both.framed.tolist() == [False, False, True, True]
    assert np.array_equal(np.unique(both.labels), np.arange(both.labels.max() + 1))  # consecutive
    for lab in np.unique(both.labels):  # no cluster spans two views
        assert len(np.unique(both.view[both.labels == lab])) == 1
    fz = both.frame_z(z)
    assert np.allclose(fz[:8], np.r_[z[:4], z[:4]])  # the global copies as they are
    assert np.allclose(fz[8:12], z[:4] + 7.5) and np.allclose(fz[12:16], z[:4] - 7.5)
    assert fz[16:].tolist() == [1200.0, 1800.0]


def test_check_views():
    assert check_views(None).size == 0 and check_views([]).size == 0
    assert check_views([5, -5, 0]).tolist() == [-5.0, 0.0, 5.0]
    for bad in (["a"], [0, 0], [float("nan")], [600.0], "minus five"):
        with pytest.raises(ConfigError, match="barrel_views"):
            check_views(bad)


def test_bad_options():
    x, y, z = _displaced_track()
    with pytest.raises(ConfigError, match="empty"):
        view_clusters(x, y, z, "dbscan", barrel_views=[])
    with pytest.raises(ConfigError, match="replace the barrel's vertex-z scan"):
        view_clusters(x, y, z, "dbscan", barrel_views=[0.0], vertex_scan="all")
    with pytest.raises(ConfigError, match="unknown dbscan parameter"):
        view_clusters(x, y, z, "dbscan", barrel_views=[0.0], radius=3)


def test_parse_views():
    from trackstudy.locality.views import parse_views

    assert parse_views("7.5,-7.5,0") == [-7.5, 0.0, 7.5]
    assert parse_views("none") == [] and parse_views("") == []
    with pytest.raises(ConfigError, match="--barrel-views '1,a': expected vertex z values"):
        parse_views("1,a")
    with pytest.raises(ConfigError, match="--views '1,1': .*must differ"):
        parse_views("1,1", "--views")


def test_view_containment_by_hand():
    import pandas as pd

    from trackstudy.data.io import Event
    from trackstudy.errors import DataError
    from trackstudy.locality.views import view_containment

    # particle 1 from z = 10 mm: split from the origin with eps 1 mm (the first test), whole from
    # z = 10 mm; particle 2 from z = 0 at phi = 2.5: all four hits land on z_c = 91 x (-0.2) from the origin
    x1, y1, z1 = _displaced_track(10.0, 0.3, 0.4)
    x2, y2, z2 = _displaced_track(0.0, -0.2, 2.5)
    hits = pd.DataFrame({"hit_id": np.arange(1, 9), "x": np.concatenate([x1, x2]), "y": np.concatenate([y1, y2]),
                         "z": np.concatenate([z1, z2]), "volume_id": 8})
    truth = pd.DataFrame({"hit_id": np.arange(1, 9), "particle_id": [1] * 4 + [2] * 4})
    particles = pd.DataFrame({"particle_id": [1, 2], "px": [2.0, 3.0], "py": [0.0, 0.0], "pz": [0.5, -0.5],
                              "vx": 0.0, "vy": 0.0, "vz": [10.0, 0.0], "q": 1, "nhits": 4})
    event = Event(1000, hits, truth, particles)
    params = {"barrel_eps": 1.0, "barrel_min_samples": 1}
    table = view_containment(event, barrel_views=[0.0, 10.0], params=params, vz_edges=(0.0, 5.0, 20.0))
    rows = table.set_index("abs_vz_mm")
    assert list(rows.index) == ["0-5", "5-20", "all"] and rows["n"].tolist() == [1, 1, 2]
    # the prompt particle: whole from the origin (its home view) and in the base partition
    assert rows.loc["0-5", "contained_base"] == 1.0 and rows.loc["0-5", "contained_home_view"] == 1.0
    # the displaced one: split in the base partition, whole in its home view (z = 10 mm)
    assert rows.loc["5-20", "contained_base"] == 0.0 and rows.loc["5-20", "contained_home_view"] == 1.0
    assert rows.loc["all", "contained_any_view"] == 1.0
    with pytest.raises(DataError, match="truth and particles"):
        view_containment(Event(1000, hits), barrel_views=[0.0])
