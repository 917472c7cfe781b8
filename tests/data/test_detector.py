import numpy as np
import pandas as pd
import pytest

from trackstudy.config import DETECTORS_CSV
from trackstudy.data.detector import Detector, pixel_layers, region_of
from trackstudy.errors import DataError


@pytest.fixture(scope="module")
def det():
    return Detector.load()


def test_module_count_and_columns(det):
    assert det.n_modules == 18728
    assert {"layer_index", "region", "module_t", "pitch_u"} <= set(det.modules.columns)
    assert len(det.layers) == 48


def test_pixel_barrel_radii_and_length(det):
    lay = det.layers[det.layers["volume_id"] == 8].sort_values("layer_id")
    assert lay["layer_id"].tolist() == [2, 4, 6, 8]
    np.testing.assert_allclose(lay["r"].to_numpy(), [32, 72, 116, 172], atol=0.5)
    assert (lay["z_max"] <= 491.0 + 1e-6).all() and (lay["z_min"] >= -491.0 - 1e-6).all()
    assert (lay["region"] == "barrel").all()


def test_pixel_endcap_disks(det):
    for vol, sign in ((7, -1), (9, 1)):
        lay = det.layers[det.layers["volume_id"] == vol]
        assert len(lay) == 7
        assert (np.sign(lay["z"]) == sign).all()
        np.testing.assert_allclose(np.sort(np.abs(lay["z"].to_numpy())), [600, 700, 820, 960, 1100, 1300, 1500], atol=1)
        # two module planes 5 mm apart per disk
        np.testing.assert_allclose((lay["z_max"] - lay["z_min"]).to_numpy(), 5.0, atol=1e-6)
    # layer ids run outer-to-inner in volume 7, inner-to-outer in volume 9
    z7 = det.layers[det.layers["volume_id"] == 7].set_index("layer_id")["z"]
    assert abs(z7[2]) > abs(z7[14])
    z9 = det.layers[det.layers["volume_id"] == 9].set_index("layer_id")["z"]
    assert abs(z9[2]) < abs(z9[14])


def test_region_of():
    assert region_of(8) == "barrel"
    assert region_of(7) == "endcap"
    assert Detector.region_of(17) == "barrel"
    np.testing.assert_array_equal(region_of([7, 8, 9, 13, 18]), ["endcap", "barrel", "endcap", "barrel", "endcap"])
    with pytest.raises(DataError, match="volume_id 5"):
        region_of(5)


def test_layer_index_order(det):
    # pixel barrel first, inside out
    assert [det.layer_index(8, lid) for lid in (2, 4, 6, 8)] == [0, 1, 2, 3]
    # pixel disks by increasing |z|, volume 7 layer 14 (|z| 600) before layer 2 (|z| 1500)
    assert det.layer_index(7, 14) < det.layer_index(7, 2)
    assert det.layer_index(9, 2) < det.layer_index(9, 14)
    # every pixel layer before every strip layer
    pix = det.layer_index(np.array([7, 8, 9]), np.array([2, 8, 14]))
    assert pix.max() < det.layer_index(13, 2)
    assert sorted(det.layers["layer_index"]) == list(range(48))
    with pytest.raises(DataError, match="layer_id 3"):
        det.layer_index(8, 3)


def test_adjacent_layers(det):
    assert det.adjacent_layers(0) == [1, 4, 5]  # next barrel layer and the first disk on each side
    assert 18 in det.adjacent_layers(3)         # outer pixel barrel -> first short-strip barrel layer


def test_local_global_round_trip(det):
    rows = np.array([0, 500, 5000, 18000])
    u = np.array([1.0, -3.0, 5.5, 0.0])
    v = np.array([-2.0, 10.0, 0.5, 30.0])
    xyz = det.to_global(rows, u, v)
    loc = det.to_local(rows, xyz)
    # detectors.csv rotations carry 6 significant digits: round trip to well below a micron
    np.testing.assert_allclose(loc, np.stack([u, v, np.zeros(4)], 1), atol=1e-4)
    # rotations are orthonormal
    rot = det.rotations()
    np.testing.assert_allclose(np.einsum("nij,nkj->nik", rot, rot), np.broadcast_to(np.eye(3), rot.shape), atol=1e-5)


def test_module_lookups(det):
    hits = pd.DataFrame({"volume_id": [8, 17], "layer_id": [2, 4], "module_id": [1, 3]})
    info = det.module_info(hits)
    np.testing.assert_allclose(info["module_t"], [0.15, 0.35])
    np.testing.assert_allclose(info["pitch_u"], [0.05, 0.12])
    with pytest.raises(DataError, match="module 99999"):
        det.module_row([8], [2], [99999])
    assert len(pixel_layers(det)) == 18


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        Detector.load(tmp_path / "nope.csv")
    bad = tmp_path / "det.csv"
    pd.read_csv(DETECTORS_CSV, nrows=5).drop(columns=["module_t"]).to_csv(bad, index=False)
    with pytest.raises(DataError, match="missing column module_t"):
        Detector.load(bad)
