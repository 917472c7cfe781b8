import numpy as np
import pandas as pd
import pytest

from trackstudy.errors import ConfigError, DataError
from trackstudy.models.features import AVAILABLE_FEATURES, DEFAULT_FEATURES, FeatureConfig, feature_array, hit_features


def test_hand_computed_values():
    # hit at (x, y, z) = (100, 100, 200) mm: r = 141.42 mm, phi = pi/4, eta = asinh(200/141.42)
    cfg = FeatureConfig(names=AVAILABLE_FEATURES)
    f = feature_array([100.0], [100.0], [200.0], cfg, cluster=[0])[0]
    r = np.sqrt(2) * 100
    expected = {"x": 0.5, "y": 0.5, "z": 200 / 1500, "r": r / 200, "sin_phi": np.sqrt(0.5),
                "cos_phi": np.sqrt(0.5), "phi": 0.25, "eta": np.arcsinh(200 / r) / 5,
                "theta": np.arctan2(r, 200) / np.pi, "dphi_cl": 0.0, "deta_cl": 0.0}  # alone in its cluster
    for name, value in zip(cfg.names, f):
        assert value == pytest.approx(expected[name], rel=1e-6, abs=1e-7), name


def test_default_order_dtype_and_fixed_scales():
    hits = pd.DataFrame({"x": np.float32([30.0, -50.0]), "y": np.float32([0.0, 10.0]), "z": np.float32([0.0, -700.0])})
    f = hit_features(hits)
    assert f.shape == (2, len(DEFAULT_FEATURES)) and f.dtype == np.float32
    # no per-event fitting: the features of a hit do not depend on the other hits
    f1 = hit_features(hits.iloc[:1])
    np.testing.assert_array_equal(f[:1], f1)
    assert f[0, DEFAULT_FEATURES.index("eta")] == 0.0


def test_beam_line_hit_is_finite():
    f = feature_array([0.0], [0.0], [100.0])
    assert np.isfinite(f).all()


def test_real_event_features_in_range():
    from trackstudy.config import ROOT
    from trackstudy.data.io import read_event, select_volumes
    ev = select_volumes(read_event(ROOT / "data" / "real" / "mini", parts=("hits",)))
    f = hit_features(ev.hits)
    assert np.isfinite(f).all()
    assert np.abs(f).max() <= 1.01  # pixel detector scales keep features within [-1, 1]


def test_errors_name_the_problem():
    with pytest.raises(DataError, match="'z'"):
        hit_features(pd.DataFrame({"x": [1.0], "y": [2.0]}))
    with pytest.raises(DataError, match="'y'.*row 1"):
        hit_features(pd.DataFrame({"x": [1.0, 2.0], "y": [2.0, np.nan], "z": [0.0, 0.0]}))
    with pytest.raises(ConfigError, match="rho"):
        FeatureConfig(names=("x", "rho"))
    with pytest.raises(ConfigError, match="xy_scale"):
        FeatureConfig(xy_scale=0.0)


def test_config_round_trip():
    cfg = FeatureConfig(names=("x", "y", "z"), z_scale=3000.0)
    assert FeatureConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.n_features == 3
