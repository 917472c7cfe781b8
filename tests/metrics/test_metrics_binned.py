"""Binned efficiencies: Clopper-Pearson intervals checked on paper and against the binomial
tails, empty bins, overflow folding, the pT-cut rule."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from trackstudy.errors import ConfigError
from trackstudy.metrics import PT_EDGES, binned_efficiency, binned_fake_rate, binned_ratio, clopper_pearson


def test_clopper_pearson_at_zero_and_n():
    alpha = 1 - 0.68
    n = 10
    lo, hi = clopper_pearson(0, n, 0.68)
    # k = 0: P(X = 0 | p_hi) = (1 - p_hi)^n = alpha/2  ->  p_hi = 1 - (alpha/2)^(1/n)
    assert lo == 0.0
    assert hi == pytest.approx(1 - (alpha / 2) ** (1 / n), abs=1e-12)
    assert hi == pytest.approx(0.16745, abs=1e-5)  # 1 - exp(ln(0.16) / 10) = 1 - 0.83255, on paper
    lo, hi = clopper_pearson(n, n, 0.68)
    assert hi == 1.0
    assert lo == pytest.approx((alpha / 2) ** (1 / n), abs=1e-12)
    lo, hi = clopper_pearson(0, 0)
    assert np.isnan(lo) and np.isnan(hi)
    lo, hi = clopper_pearson(1, 1, 0.68)
    assert lo == pytest.approx(0.16) and hi == 1.0  # n = 1: p_lo = alpha/2


@pytest.mark.parametrize("k, n", [(1, 10), (5, 10), (9, 10), (3, 7), (40, 100)])
def test_clopper_pearson_tails(k, n):
    lo, hi = clopper_pearson(k, n, 0.68)
    # defining property: P(X >= k | lo) = alpha/2 and P(X <= k | hi) = alpha/2
    assert binom.sf(k - 1, n, lo) == pytest.approx(0.16, abs=1e-9)
    assert binom.cdf(k, n, hi) == pytest.approx(0.16, abs=1e-9)
    assert lo < k / n < hi


def test_binned_ratio_empty_bins_and_folding():
    values = np.array([0.7, 0.8, 5.0, 50.0, np.inf, 0.1, np.nan])
    passed = np.array([True, False, True, True, False, True, True])
    t = binned_ratio(values, passed, PT_EDGES, overflow=True)
    assert list(t.columns) == ["low", "high", "centre", "n_total", "n_pass", "eff", "err_low", "err_high"]
    assert t.n_total.tolist() == [1, 1, 0, 0, 0, 0, 1, 2]  # 0.1 and NaN dropped; 50 and inf folded
    assert t.eff.iloc[0] == 1.0 and t.eff.iloc[1] == 0.0 and t.eff.iloc[7] == 0.5
    assert t.err_low.iloc[1] == 0.0 and t.err_high.iloc[1] == pytest.approx(0.84)  # k = 0, n = 1
    assert np.isnan(t.eff.iloc[2]) and np.isnan(t.err_low.iloc[2]) and np.isnan(t.err_high.iloc[2])
    assert t.eff.iloc[6] == 1.0 and t.err_high.iloc[6] == 0.0 and t.err_low.iloc[6] == pytest.approx(1 - 0.16)
    assert t.centre.iloc[0] == pytest.approx(0.675)
    with pytest.raises(ConfigError, match="strictly increasing"):
        binned_ratio(values, passed, [1.0, 1.0])


def particles_table():
    return pd.DataFrame({
        "particle_id": np.arange(1, 7),
        "pt": [0.7, 0.95, 2.5, 20.0, 1.2, 3.0],
        "eta": [0.1, -0.5, 1.9, 0.2, 3.9, 4.5],
        "phi": [0.0, 1.0, 2.0, -3.0, -1.0, 0.5],
        "vz": [0.0, 10.0, -500.0, 20.0, 0.0, 0.0],
        "nhits": [5, 5, 5, 5, 2, 5],
        "region": ["barrel", "barrel", "endcap", "barrel", "endcap", "endcap"],
        "dm_matched": [True, False, True, True, True, True],
        "perfect_matched": [False, False, True, False, True, True],
        "lhc_matched": [True, True, True, True, True, True],
    })


def test_binned_efficiency_selection():
    p = particles_table()
    t = binned_efficiency(p, "pt")  # pT cut replaced by the bins: particle 1 (0.7) included
    assert t.n_total.sum() == 4  # particle 5 has 2 hits, particle 6 |eta| > 4
    assert t.n_total.iloc[0] == 1 and t.n_pass.iloc[0] == 1
    assert t.n_total.iloc[-1] == 1  # 20 GeV folded into [6, 10]
    e = binned_efficiency(p, "eta", kind="perfect")
    assert e.n_total.sum() == 3  # pT > 0.9: particles 2, 3, 4
    assert e.n_pass.sum() == 1
    v = binned_efficiency(p, "vz")
    assert v.n_total.iloc[0] == 1  # -500 mm folded into the first bin
    b = binned_efficiency(p, "eta", region="endcap")
    assert b.n_total.sum() == 1
    with pytest.raises(ConfigError, match="kind"):
        binned_efficiency(p, "pt", kind="nope")


def test_binned_fake_rate():
    tracks = pd.DataFrame({"nhits": [3, 4, 2, 5], "dm": [True, False, False, False], "region": ["barrel"] * 4,
                           "eta": [0.1, 0.15, 0.2, 7.0], "pt": [1.0, 2.0, 3.0, np.inf], "phi": 0.0})
    t = binned_fake_rate(tracks, "eta")
    assert t.n_total.sum() == 3 and t.n_pass.sum() == 2  # 2-hit track excluded; eta 7 folded
    assert t.eff.iloc[10] == 0.5
    assert binned_fake_rate(tracks, "pt").n_total.iloc[-1] == 1  # infinite pT (straight line) -> overflow
