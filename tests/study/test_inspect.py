import math

import numpy as np
import pytest
import torch

from trackstudy.config import ROOT
from trackstudy.data.io import merge_event, read_event, select_volumes
from trackstudy.errors import ConfigError, DataError
from trackstudy.models.encoder import EncoderConfig
from trackstudy.models.heads import build_model
from trackstudy.study.attention_maps import attention_profile, attention_summary, event_attention, inspect_event

# three hits: 0 and 1 close in eta and (across the phi seam) in phi, 2 far away; hit 2 is noise
ETA = np.array([0.0, 0.05, 1.0])
PHI = np.array([3.1, -3.1, 0.0])
PID = np.array([5, 5, 0], dtype=np.int64)
A = np.array([[0.5, 0.5, 0.0],
              [0.25, 0.25, 0.5],
              [0.0, 0.0, 1.0]])
DPHI01 = 2 * np.pi - 6.2


def test_summary_hand_computed():
    s = attention_summary(A, ETA, PHI, particle_id=PID, eta_window=0.1, phi_window=0.1)
    assert len(s) == 1 and s.loc[0, "layer"] == 0 and s.loc[0, "head"] == 0
    row = s.iloc[0]
    assert row.mean_abs_deta == pytest.approx((0.5 * 0.05 + 0.25 * 0.05 + 0.5 * 0.95) / 3)
    assert row.mean_abs_dphi == pytest.approx((0.5 * DPHI01 + 0.25 * DPHI01 + 0.5 * 3.1) / 3)
    assert row.frac_local == pytest.approx((1.0 + 0.5 + 1.0) / 3)
    assert row.frac_self == pytest.approx((0.5 + 0.25 + 1.0) / 3)
    assert row.frac_same_particle == pytest.approx((1.0 + 0.5) / 2)  # noise query 2 excluded
    assert row.entropy == pytest.approx(2.5 * math.log(2) / 3)
    # uniform attention over all three hits
    assert row.baseline_mean_abs_deta == pytest.approx((0.05 + 1.0 + 0.05 + 0.95 + 1.0 + 0.95) / 9)
    assert row.baseline_frac_self == pytest.approx(1 / 3)


def test_summary_layers_heads_and_mask():
    w = np.stack([np.stack([A, np.eye(3)])] * 2)  # (L=2, H=2, 3, 3)
    allowed = np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], bool)
    s = attention_summary(w, ETA, PHI, allowed=allowed, stage="classifier")
    assert len(s) == 4 and set(s.stage) == {"classifier"}
    eye = s[(s["layer"] == 1) & (s["head"] == 1)].iloc[0]
    assert eye.frac_self == 1.0 and eye.mean_abs_deta == 0.0 and eye.entropy == 0.0
    # baseline respects the mask: uniform over {0,1}, {0,1}, {2}
    assert eye.baseline_mean_abs_deta == pytest.approx((0.025 + 0.025 + 0.0) / 3)
    with pytest.raises(DataError, match="shape"):
        attention_summary(A, ETA[:2], PHI)


def test_profile_hand_computed():
    p = attention_profile(A, ETA, PHI, deta_edges=[0.0, 0.1, 1.0, np.inf], dphi_edges=[0.0, 0.1, np.inf])
    de = p[p.variable == "deta"].reset_index(drop=True)
    np.testing.assert_allclose(de.mass, [2.5 / 3, 0.5 / 3, 0.0])
    np.testing.assert_allclose(de["lo"], [0.0, 0.1, 1.0])
    # uniform: per row 1/3 each; |deta| pairs: row0 (0, .05, 1.0), row1 (.05, 0, .95), row2 (1, .95, 0)
    np.testing.assert_allclose(de.uniform, [5 / 9, 2 / 9, 2 / 9])
    dp = p[p.variable == "dphi"]
    np.testing.assert_allclose(dp.mass.sum(), 1.0)
    np.testing.assert_allclose(dp.mass, [2.5 / 3, 0.5 / 3])
    with pytest.raises(ConfigError, match="edges"):
        attention_profile(A, ETA, PHI, deta_edges=[0.1, 0.0])


@pytest.fixture(scope="module")
def small_event():
    df = merge_event(select_volumes(read_event(ROOT / "data" / "real" / "mini")))
    return df.iloc[:60].reset_index(drop=True)


@pytest.mark.parametrize("family", ["contrastive", "jm"])
def test_event_attention_on_model(family, small_event):
    torch.manual_seed(0)
    enc = EncoderConfig.preset("tiny", n_features=7)
    model = build_model(family, enc, **({"n_classes": 4, "cla_layers": 1} if family == "jm" else {}))
    cluster = (np.arange(60) // 20).astype(np.int64)
    maps, summary, profile = inspect_event(model, small_event, cluster=cluster)
    stages = ["regressor", "classifier"] if family == "jm" else ["encoder"]
    assert list(maps.weights) == stages
    for stage, w in maps.weights.items():
        assert w.shape == (1 if stage == "classifier" else 2, 2, 60, 60)
        np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
        assert (w[..., ~maps.allowed] == 0).all()  # no attention across locality clusters
    assert len(summary) == sum(w.shape[0] * w.shape[1] for w in maps.weights.values())
    assert summary.frac_same_particle.notna().all()
    assert np.allclose(profile.groupby(["stage", "layer", "head", "variable"]).mass.sum(), 1.0)
    # capturing the maps does not change the model's outputs
    x = torch.randn(1, 10, 7)
    with torch.no_grad():
        plain = model.eval()(x)
        with model.capture_attention() as m:
            captured = model(x)
    assert m and all(torch.allclose(plain[k], captured[k], atol=1e-5) for k in plain)


def test_event_attention_guards(small_event):
    model = build_model("contrastive", EncoderConfig.preset("tiny", n_features=7))
    with pytest.raises(ConfigError, match="max_hits"):
        event_attention(model, small_event, max_hits=10)
    with pytest.raises(DataError, match="'z'"):
        event_attention(model, small_event.drop(columns="z"))
