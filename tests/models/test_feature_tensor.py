"""trackstudy.models.features.feature_tensor: the input features in torch equal feature_array's."""

import numpy as np
import pytest
import torch

from trackstudy.data.io import read_event
from trackstudy.errors import ConfigError, DataError
from trackstudy.inference import cluster_hits
from trackstudy.models.features import AVAILABLE_FEATURES, FeatureConfig, feature_array, feature_tensor


def test_every_feature_equals_numpy(mini_dir):
    hits = read_event(mini_dir, parts=("hits",)).hits
    x, y, z = (hits[c].to_numpy(np.float64) for c in ("x", "y", "z"))
    x[0] = y[0] = 0.0  # a hit on the beam line stays finite
    labels = cluster_hits(hits, {"method": "grid"})
    cfg = FeatureConfig(names=AVAILABLE_FEATURES)
    got = feature_tensor(*(torch.from_numpy(a) for a in (x, y, z)), cfg, torch.from_numpy(labels))
    assert got.dtype == torch.float32 and got.shape == (len(x), len(AVAILABLE_FEATURES))
    np.testing.assert_allclose(got.numpy(), feature_array(x, y, z, cfg, labels), rtol=0, atol=2e-6)
    default = feature_tensor(*(torch.from_numpy(a) for a in (x, y, z)))
    np.testing.assert_allclose(default.numpy(), feature_array(x, y, z), rtol=0, atol=2e-6)


def test_errors():
    t = torch.ones(3, dtype=torch.float64)
    cfg = FeatureConfig(names=("x", "dphi_cl"))
    with pytest.raises(ConfigError, match="need cluster labels"):
        feature_tensor(t, t, t, cfg)
    with pytest.raises(DataError, match="integers >= 0"):
        feature_tensor(t, t, t, cfg, torch.tensor([0, -1, 2]))
