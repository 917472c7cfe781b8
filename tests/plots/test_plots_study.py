"""Figures of notebooks 03 and 04: training curves and attention against the locality mask."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from trackstudy.errors import ConfigError, DataError  # noqa: E402
from trackstudy.plots.attention import (  # noqa: E402
    hit_order,
    plot_attention_profile,
    plot_attention_vs_mask,
    plot_locality_summary,
)
from trackstudy.plots.training import plot_training_curves, plot_validation_tracks, read_logs  # noqa: E402
from trackstudy.study.attention_maps import AttentionMaps, attention_profile, attention_summary  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def test_training_curves(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({"step": [1, 2, 3], "loss": [3.0, 2.0, 1.0], "lr": [1e-4, 2e-4, 3e-4]}).to_csv(run / "log_steps.csv",
                                                                                              index=False)
    pd.DataFrame({"step": [3], "val_loss": [1.5]}).to_csv(run / "log_val.csv", index=False)
    steps, val = read_logs(run)
    assert list(steps["loss"]) == [3.0, 2.0, 1.0] and list(val["val_loss"]) == [1.5]
    ax_loss, ax_lr = plot_training_curves({"m": run}, smooth=1)
    lines = {ln.get_label(): ln for ln in ax_loss.get_lines()}
    assert list(lines["m train"].get_ydata()) == [3.0, 2.0, 1.0]
    assert list(lines["m validation"].get_ydata()) == [1.5]
    assert len(ax_lr.get_lines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert read_logs(empty)[0].empty  # a run that has not logged yet plots nothing, no error
    with pytest.raises(DataError, match="no such run folder"):
        read_logs(tmp_path / "missing")


def _maps():
    # 4 hits: two clusters {0, 1}, {2, 3}; hits 0 and 2 of particle 7, hit 1 noise, hit 3 particle 9
    cluster = np.array([0, 0, 1, 1])
    allowed = cluster[:, None] == cluster[None, :]
    w = np.where(allowed, 0.5, 0.0)[None, None].repeat(2, axis=0).repeat(2, axis=1)  # (L=2, H=2, 4, 4)
    maps = AttentionMaps({"encoder": w.astype(np.float32)}, np.arange(1, 5), np.array([0.0, 0.05, 1.0, 1.02]),
                         np.zeros(4), np.array([7, 0, 7, 9]), allowed)
    return maps, cluster


def test_hit_order_groups_clusters_then_particles():
    maps, cluster = _maps()
    assert list(hit_order(maps, np.array([1, 0, 1, 0]))) == [1, 3, 0, 2]  # cluster 0: noise then 9; cluster 1 by eta
    assert list(hit_order(maps)) == [1, 0, 2, 3]  # one cluster: by particle id, then eta


def test_attention_figures():
    maps, cluster = _maps()
    axes = plot_attention_vs_mask(maps, cluster=cluster, layer=1, head=1)
    assert len(axes) == 3
    with pytest.raises(ConfigError, match="2 layers x 2 heads"):
        plot_attention_vs_mask(maps, layer=2)
    with pytest.raises(ConfigError, match="stage"):
        plot_attention_vs_mask(maps, stage="classifier")
    w = maps.weights["encoder"]
    profile = attention_profile(w, maps.eta, maps.phi, allowed=maps.allowed)
    plot_attention_profile(profile)
    summary = attention_summary(w, maps.eta, maps.phi, particle_id=maps.particle_id, allowed=maps.allowed)
    ax = plot_locality_summary(summary, metric="frac_local")
    # uniform attention over the mask: zero excess everywhere
    assert np.allclose(ax.get_images()[0].get_array(), 0.0)
    with pytest.raises(ConfigError, match="metric"):
        plot_locality_summary(summary, metric="nope")


def test_validation_tracks_curve(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pd.DataFrame({"step": [10, 20], "train_seconds": [60.0, 120.0], "val_loss": [2.0, 1.5],
                  "val_dm_efficiency": [0.5, 0.8], "val_fake_rate": [0.4, 0.1]}).to_csv(run / "log_val.csv", index=False)
    old = tmp_path / "old"  # a run logged before the track metrics: nothing drawn, no error
    old.mkdir()
    pd.DataFrame({"step": [10], "val_loss": [2.0]}).to_csv(old / "log_val.csv", index=False)
    ax = plot_validation_tracks({"run": run, "old": old})
    lines = ax.get_lines()
    assert len(lines) == 2
    assert np.allclose(lines[0].get_xdata(), [1.0, 2.0]) and np.allclose(lines[0].get_ydata(), [0.5, 0.8])
    plt.close("all")
