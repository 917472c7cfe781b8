"""Efficiency plots: HEP-convention error bars (x = half bin, asymmetric y), several models,
NaN bins skipped, matplotlib and plotly."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from trackstudy.errors import ConfigError  # noqa: E402
from trackstudy.metrics import PT_EDGES, binned_ratio  # noqa: E402
from trackstudy.plots.efficiency import plot_efficiency, plot_efficiency_plotly, plot_region_summary  # noqa: E402


def tables():
    rng = np.random.default_rng(3)
    values = rng.uniform(0.6, 3.0, 200)
    a = binned_ratio(values, rng.random(200) < 0.9, PT_EDGES, overflow=True)
    b = binned_ratio(values, rng.random(200) < 0.5, PT_EDGES, overflow=True)
    return {"model A": a, "model B": b}


def test_matplotlib_errorbars_follow_hep_convention():
    t = tables()
    ax = plot_efficiency(t, var="pt")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["model A", "model B"]
    n_filled = int(t["model A"].eff.notna().sum())
    assert n_filled < len(t["model A"])  # the bins above 3 GeV are empty ...
    line = ax.containers[0].lines[0]
    assert len(line.get_xdata()) == n_filled  # ... and are not drawn
    # x error bars span exactly the bins
    segs = ax.containers[0].lines[2][0].get_segments()
    ok = t["model A"].eff.notna().to_numpy()
    lows = np.array([s[0][0] for s in segs])
    highs = np.array([s[1][0] for s in segs])
    assert np.allclose(lows, t["model A"].low[ok]) and np.allclose(highs, t["model A"].high[ok])
    # asymmetric y errors: Clopper-Pearson (upper error 0 at eff = 1)
    ysegs = ax.containers[0].lines[2][1].get_segments()
    eff = t["model A"].eff[ok].to_numpy()
    assert np.allclose([s[1][1] - e for s, e in zip(ysegs, eff)], t["model A"].err_high[ok])
    assert ax.get_xscale() == "log"
    plt.close("all")


def test_plotly_figure_has_one_trace_per_model():
    t = tables()
    fig = plot_efficiency_plotly(t, var="pt", title="DM efficiency")
    assert [tr.name for tr in fig.data] == ["model A", "model B"]
    tr = fig.data[0]
    ok = t["model A"].eff.notna().to_numpy()
    assert np.allclose(tr.error_y.array, t["model A"].err_high[ok])
    assert np.allclose(np.asarray(tr.x) - np.asarray(tr.error_x.arrayminus), t["model A"].low[ok])
    assert fig.layout.xaxis.type == "log"


def test_region_summary_and_bad_input():
    summary = pd.DataFrame({"barrel_dm_efficiency": [0.9, 0.5], "endcap_dm_efficiency": [0.8, np.nan]},
                           index=["a", "b"])
    ax = plot_region_summary(summary)
    assert len(ax.patches) == 4
    plt.close("all")
    with pytest.raises(ConfigError, match="missing column"):
        plot_efficiency({"x": pd.DataFrame({"eff": [1.0]})})
    with pytest.raises(ConfigError, match="non-empty"):
        plot_efficiency({})
