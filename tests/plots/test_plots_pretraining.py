"""Figures of notebook 08: tokens vs pile-up, codebook usage, decoded hits, the masked curve and the
label-efficiency curve draw what their tables hold."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from trackstudy.errors import DataError  # noqa: E402
from trackstudy.plots import pretraining as plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_token_counts_and_codebook():
    table = pd.DataFrame({"pileup": [0.0, 0.0, 20.0], "tokens": [100, 120, 900], "codes_used": [50, 60, 300]})
    ax = plots.plot_token_counts(table)
    means = [ln for ln in ax.get_lines() if ln.get_label() == "hit tokens (pixel hits)"][0]
    assert list(means.get_ydata()) == [110, 900]
    ax = plots.plot_codebook_usage(np.array([0, 5, 2, 0]))
    assert sorted(p.get_height() for p in ax.patches) == [0, 0, 2, 5]
    assert "2 of 4 codes" in ax.get_title()


def test_reconstruction_masked_curve_and_label_efficiency():
    hits = pd.DataFrame({"x_true": [1.0, 2.0], "y_true": [0.0, 1.0], "x_decoded": [1.1, 2.1], "y_decoded": [0.1, 1.0],
                         "phi_true": [3.1, 0.0], "phi_decoded": [-3.1, 0.1]})
    ax_xy, ax_phi = plots.plot_reconstruction(hits)
    assert len(ax_xy.get_lines()) == 2 and sum(p.get_height() for p in ax_phi.patches) == 2
    with pytest.raises(DataError, match="x and y"):
        plots.plot_reconstruction(hits.drop(columns="x_true"))
    curve = pd.DataFrame({"step": [10, 20], "val_code_accuracy": [0.1, 0.3], "val_phi_error_rad": [1.0, 0.5]})
    acc, phi = plots.plot_masked_curve(curve)
    assert list(acc.get_lines()[0].get_ydata()) == [0.1, 0.3]
    table = pd.DataFrame({"n_labelled": [30, 10, 10, 30], "init": ["scratch", "scratch", "pretrained", "pretrained"],
                          "dm_efficiency": [0.8, 0.5, 0.6, 0.85]})
    ax = plots.plot_label_efficiency(table)
    lines = {ln.get_label(): list(ln.get_ydata()) for ln in ax.get_lines()}
    assert lines == {"scratch": [0.5, 0.8], "pretrained": [0.6, 0.85]}
