"""Projection onto the barrel cylinder and endcap planes, checked on hand-computed points."""

import numpy as np
import pandas as pd
import pytest

from trackstudy.errors import ConfigError, DataError
from trackstudy.locality.projection import (
    BARREL,
    ENDCAP_NEG,
    ENDCAP_POS,
    Surfaces,
    endcap_spread,
    project,
    project_hits,
    project_to_cylinder,
    project_to_plane,
    vertex_z_scan,
)


def test_barrel_hit_on_the_cylinder():
    p = project([91.0], [0.0], [100.0])
    assert p.surface[0] == BARREL
    assert p.u[0] == pytest.approx(0.0)
    assert p.v[0] == pytest.approx(100.0)


def test_endcap_hit_projected_to_plus_plane():
    # line from the origin through (50, 0, 1840) meets z = 920 at half the way: (25, 0)
    p = project([50.0], [0.0], [1840.0])
    assert p.surface[0] == ENDCAP_POS
    assert (p.u[0], p.v[0]) == pytest.approx((25.0, 0.0))


def test_endcap_hit_projected_to_minus_plane():
    p = project([0.0], [50.0], [-1840.0])
    assert p.surface[0] == ENDCAP_NEG
    assert (p.u[0], p.v[0]) == pytest.approx((0.0, 25.0))


def test_barrel_coordinates_scale_with_radius_and_phi():
    # (0, 182, 50): phi = pi/2, z_c = 50 * 91 / 182 = 25
    p = project([0.0], [182.0], [50.0])
    assert p.surface[0] == BARREL
    assert p.u[0] == pytest.approx(91.0 * np.pi / 2)
    assert p.v[0] == pytest.approx(25.0)


def test_phi_seam_gives_both_ends_of_the_u_range():
    p = project([-91.0, -91.0], [1e-9, -1e-9], [0.0, 0.0])
    assert p.u[0] == pytest.approx(91.0 * np.pi)
    assert p.u[1] == pytest.approx(-91.0 * np.pi)
    assert p.period == pytest.approx(2 * np.pi * 91.0)


def test_surface_boundary_goes_to_the_barrel():
    # the line through (91, 0, 920) meets the cylinder exactly at the rim of the plane
    p = project([91.0, 91.0], [0.0, 0.0], [920.0, 920.1])
    assert p.surface.tolist() == [BARREL, ENDCAP_POS]


def test_projection_from_a_vertex_z():
    # z_c = z0 + (z - z0) * R / r: (182, 0, 210) from z0 = 10 -> 10 + 200 / 2 = 110
    p = project([91.0, 182.0], [0.0, 0.0], [110.0, 210.0], z0=10.0)
    assert p.v == pytest.approx([110.0, 110.0])
    # endcap: (40, 0, 1740) from z0 = 100: t = (920 - 100) / (1740 - 100) = 0.5 -> (20, 0)
    p = project([40.0], [0.0], [1740.0], z0=100.0)
    assert p.surface[0] == ENDCAP_POS
    assert (p.u[0], p.v[0]) == pytest.approx((20.0, 0.0))
    assert p.z0[0] == 100.0


def test_per_hit_vertex_z():
    p = project([91.0, 91.0], [0.0, 0.0], [110.0, 110.0], z0=[0.0, 10.0])
    assert p.v == pytest.approx([110.0, 110.0])
    p = project([182.0, 182.0], [0.0, 0.0], [210.0, 210.0], z0=[0.0, 10.0])
    assert p.v == pytest.approx([105.0, 110.0])


def test_straight_track_from_vertex_maps_to_one_point():
    t = np.array([0.3, 0.7, 1.0, 1.6, 2.2])
    d = np.array([30.0, -20.0, 25.0])
    for z0 in (0.0, 15.0):
        x, y, z = t * d[0], t * d[1], z0 + t * d[2]
        p = project(x, y, z, z0=z0)
        assert np.ptp(p.u) == pytest.approx(0.0, abs=1e-9)
        assert np.ptp(p.v) == pytest.approx(0.0, abs=1e-9)
        assert len(set(p.surface.tolist())) == 1


def test_configurable_surfaces():
    s = Surfaces(radius=50.0, z_plane=500.0)
    p = project([100.0, 10.0], [0.0, 0.0], [400.0, 400.0], surfaces=s)
    # (100, 0, 400): z_c = 400 * 50 / 100 = 200 -> barrel; (10, 0, 400): z_c = 2000 -> plane, t = 1.25
    assert p.surface.tolist() == [BARREL, ENDCAP_POS]
    assert p.v[0] == pytest.approx(200.0)
    assert p.u[1] == pytest.approx(12.5)
    assert p.period == pytest.approx(100 * np.pi)


def test_pure_helpers():
    u, v = project_to_cylinder(np.array([0.0]), np.array([-45.5]), np.array([10.0]), radius=91.0)
    assert u[0] == pytest.approx(-91.0 * np.pi / 2) and v[0] == pytest.approx(20.0)
    pu, pv = project_to_plane(np.array([30.0]), np.array([-60.0]), np.array([-1380.0]), z_plane=-920.0)
    assert (pu[0], pv[0]) == pytest.approx((20.0, -40.0))


def test_hits_frame_and_errors():
    hits = pd.DataFrame({"x": [91.0, 50.0], "y": [0.0, 0.0], "z": [100.0, 1840.0]})
    p = project_hits(hits)
    assert p.to_frame()["region"].tolist() == ["barrel", "endcap"]
    assert p.region_mask("endcap").tolist() == [False, True]
    with pytest.raises(DataError, match="missing column z"):
        project_hits(hits[["x", "y"]])
    with pytest.raises(DataError, match="coordinate y, row 1"):
        project([1.0, 2.0], [1.0, np.nan], [0.0, 0.0])
    with pytest.raises(DataError, match="vertex"):
        project([0.0], [0.0], [5.0], z0=5.0)
    with pytest.raises(ConfigError, match="z0"):
        project([1.0], [1.0], [1.0], z0=950.0)
    with pytest.raises(ConfigError, match="radius"):
        Surfaces(radius=-1.0)
    with pytest.raises(ConfigError, match="region"):
        p.region_mask("forward")


def test_vertex_z_scan_finds_the_track_vertex():
    # a straight endcap track from z0 = 30 mm: r grows linearly with z - z0
    z = np.array([600.0, 700.0, 820.0, 960.0, 1100.0, 1300.0, 1500.0])
    r = (z - 30.0) * 0.08
    x, y = r * np.cos(0.4), r * np.sin(0.4)
    cands = np.arange(-100.0, 101.0, 5.0)
    best, spread = vertex_z_scan(x, y, z, cands)
    assert best == pytest.approx(30.0)
    assert spread[cands == 30.0][0] == pytest.approx(0.0, abs=1e-9)
    assert spread[cands == 0.0][0] > 0.5  # projected from the origin the track is smeared
    # candidates behind some hit are rejected
    assert np.isinf(endcap_spread(x, y, z, 920.0, [650.0]))[0]
    with pytest.raises(ConfigError):
        vertex_z_scan(x, y, z, [])
