"""The HEP style of the matplotlib figures (mplhep, scoped to each call) and what the figures show:
error bars = the Clopper-Pearson bounds of the table, histogram heights = counts by hand, axis
labels in the field's notation, every figure drawn without a warning (pytest turns them into errors)."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import StepPatch  # noqa: E402
from scipy.stats import beta  # noqa: E402

from trackstudy.plots import attention, efficiency, events, locality, scaling, training  # noqa: E402
from trackstudy.plots.style import FONTS, hep_style  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _rc():
    return {k: repr(v) for k, v in matplotlib.rcParams.items()}


# --- hand-made inputs ---------------------------------------------------------------------------

def _cp_table():
    """Three pT bins, 7/10, 0/4 and 5/5 passing, with central 68 % Clopper-Pearson bounds by hand."""
    low, high = np.array([0.9, 2.0, 4.0]), np.array([2.0, 4.0, 10.0])
    k, n = np.array([7, 0, 5]), np.array([10, 4, 5])
    lo = np.array([beta.ppf(0.16, 7, 4), 0.0, beta.ppf(0.16, 5, 1)])
    hi = np.array([beta.ppf(0.84, 8, 3), beta.ppf(0.84, 1, 4), 1.0])
    eff = k / n
    return pd.DataFrame({"low": low, "high": high, "centre": (low + high) / 2, "n_total": n, "n_pass": k,
                         "eff": eff, "err_low": eff - lo, "err_high": hi - eff}), lo, hi


def _particles():
    # pt = 0.5, 0.5, 2, 20 GeV (px only), eta = 0 for all but the last (pz = 20 * sinh(1)); hits 3, 3, 10, 12
    px = np.array([0.5, 0.5, 2.0, 20.0])
    pz = np.array([0.0, 0.0, 0.0, 20.0 * np.sinh(1.0)])
    return pd.DataFrame({"particle_id": [1, 2, 3, 4], "vx": 0.0, "vy": 0.0, "vz": 0.0, "px": px, "py": 0.0,
                         "pz": pz, "q": 1, "nhits": [3, 3, 10, 12]})


def _hits():
    rng = np.random.default_rng(0)
    n = 300
    return pd.DataFrame({"hit_id": np.arange(1, n + 1), "x": rng.normal(0, 100, n), "y": rng.normal(0, 100, n),
                         "z": rng.normal(0, 500, n), "volume_id": rng.choice([7, 8, 9], n),
                         "layer_id": rng.choice([2, 4, 6], n), "module_id": 1})


def _scaling_results():
    rows = [("dense", n, n ** 2 * 1e-9, n ** 2 * 1.2e-9, n ** 2 * 1e-5, "ok") for n in (1000, 2000, 4000)]
    rows += [("packed", n, n * 1e-6, n * 1.2e-6, n * 1e-2, "ok") for n in (1000, 2000, 4000)]
    return pd.DataFrame(rows, columns=["backend", "n_hits", "seconds", "total_seconds", "peak_mb", "status"])


def _stage_comparison():
    return pd.DataFrame({"component": ["projection", "encoder", "clustering", "total"],
                         "ours ms (cpu)": [1, 2, 3, 6], "ours_share": [1 / 6, 2 / 6, 3 / 6, 1.0],
                         "paper_share": [6 / 73, 20 / 73, 47 / 73, 1.0]})


def _run(tmp_path):
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    pd.DataFrame({"step": [1, 2, 3], "loss": [3.0, 2.0, 1.0], "lr": [1e-4, 2e-4, 3e-4]}).to_csv(
        run / "log_steps.csv", index=False)
    pd.DataFrame({"step": [3], "val_loss": [1.5], "train_seconds": [60.0], "val_dm_efficiency": [0.8],
                  "val_fake_rate": [0.1]}).to_csv(run / "log_val.csv", index=False)
    return run


def _maps_module():
    """The module of AttentionMaps, attention_profile and attention_summary, wherever it lives."""
    return importlib.import_module(attention.AttentionMaps.__module__)


def _maps():
    AttentionMaps = attention.AttentionMaps  # noqa: N806

    cluster = np.array([0, 0, 1, 1])
    allowed = cluster[:, None] == cluster[None, :]
    w = np.where(allowed, 0.5, 0.0)[None, None].repeat(2, axis=0).repeat(2, axis=1).astype(np.float32)
    return AttentionMaps({"encoder": w}, np.arange(1, 5), np.array([0.0, 0.05, 1.0, 1.02]), np.zeros(4),
                         np.array([7, 0, 7, 9]), allowed), cluster


def _figures(tmp_path):
    """One call of every matplotlib figure function (name, thunk)."""
    from trackstudy.metrics import ETA_EDGES, binned_ratio

    attention_profile, attention_summary = _maps_module().attention_profile, _maps_module().attention_summary

    table = _cp_table()[0]
    rng = np.random.default_rng(1)
    eta_table = binned_ratio(rng.uniform(-4, 4, 300), rng.random(300) < 0.9, ETA_EDGES)
    maps, cluster = _maps()
    w = maps.weights["encoder"]
    scan = pd.DataFrame({"region": ["barrel", "barrel", "endcap", "endcap"], "barrel_cell": [1.0, 2.0, 1.0, 2.0],
                         "attention_reduction": [0.001, 0.02, 0.004, 0.008],
                         "reconstructible_ratio": [0.9, 0.95, 0.8, 0.85], "n_clusters": 10, "n_tracks": 20})
    scan.attrs.update(method="grid", grid_names=["barrel_cell"], max_reduction=0.01)
    return {
        "plot_efficiency": lambda: efficiency.plot_efficiency({"m": table}),
        "plot_efficiency eta": lambda: efficiency.plot_efficiency({"m": eta_table}, var="eta", title="η"),
        "plot_efficiency fake": lambda: efficiency.plot_efficiency({"m": eta_table}, var="eta", kind="fake"),
        "plot_region_summary": lambda: efficiency.plot_region_summary(
            pd.DataFrame({"barrel_dm_efficiency": [0.9], "endcap_dm_efficiency": [0.8]}, index=["m"])),
        "plot_views": lambda: events.plot_views(_hits()),
        "plot_particle_distributions": lambda: events.plot_particle_distributions({"tiny": _particles()}),
        "plot_hits_per_layer": lambda: events.plot_hits_per_layer(
            {"a": pd.DataFrame({"volume_id": [8, 8], "layer_id": [2, 4], "n_hits": [3.0, 1.0]})}),
        "plot_surfaces": lambda: locality.plot_surfaces(),
        "plot_cluster_sizes": lambda: locality.plot_cluster_sizes({"x": np.array([1, 1, 2, 5])}),
        "plot_scan": lambda: locality.plot_scan(scan),
        "plot_attention_vs_mask": lambda: attention.plot_attention_vs_mask(maps, cluster=cluster),
        "plot_attention_profile": lambda: attention.plot_attention_profile(
            attention_profile(w, maps.eta, maps.phi, allowed=maps.allowed)),
        "plot_locality_summary": lambda: attention.plot_locality_summary(
            attention_summary(w, maps.eta, maps.phi, particle_id=maps.particle_id, allowed=maps.allowed)),
        "plot_scaling": lambda: scaling.plot_scaling(_scaling_results(), device="cpu"),
        "plot_stage_shares": lambda: scaling.plot_stage_shares(_stage_comparison()),
        "plot_training_curves": lambda: training.plot_training_curves({"r": _run(tmp_path)}),
        "plot_validation_tracks": lambda: training.plot_validation_tracks({"r": _run(tmp_path)}),
    }


FIGURES = [  # the keys of _figures
    "plot_efficiency", "plot_efficiency eta", "plot_efficiency fake", "plot_region_summary", "plot_views",
    "plot_particle_distributions", "plot_hits_per_layer", "plot_surfaces", "plot_cluster_sizes", "plot_scan",
    "plot_attention_vs_mask", "plot_attention_profile", "plot_locality_summary", "plot_scaling",
    "plot_stage_shares", "plot_training_curves", "plot_validation_tracks"]


def _axes_of(result):
    return [a for a in np.ravel(np.asarray(result, dtype=object)) if isinstance(a, plt.Axes)]


# --- the style is scoped ------------------------------------------------------------------------

def test_importing_the_plots_changes_no_setting():
    code = ("import matplotlib; before = {k: repr(v) for k, v in matplotlib.rcParams.items()}; "
            "import trackstudy.plots.attention, trackstudy.plots.efficiency, trackstudy.plots.events, "
            "trackstudy.plots.locality, trackstudy.plots.scaling, trackstudy.plots.training, trackstudy.plots.style; "
            "after = {k: repr(v) for k, v in matplotlib.rcParams.items()}; "
            "print(sorted(k for k in before if before[k] != after[k]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_draws_in_the_scoped_style(name, tmp_path, caplog):
    """Same rcParams after the call as before (style scoped), a returned figure that draws with no
    warning (missing glyph / font) and no findfont message, and the HEP ticks (inward, four sides)
    kept for the draw that happens after the call, as in a notebook."""
    before = _rc()
    with caplog.at_level(logging.WARNING, logger="matplotlib"):
        result = _figures(tmp_path)[name]()
        assert _rc() == before
        axes = _axes_of(result)
        assert axes
        axes[0].get_figure().canvas.draw()  # outside the style, like a notebook's inline backend
    assert not [r for r in caplog.records if "findfont" in r.getMessage()]
    assert _rc() == before
    for ax in axes:
        tick = ax.yaxis.get_major_ticks()[0]
        assert tick._tickdir == "in"
        assert tick.tick2line.get_visible()  # ticks on the right too


def test_user_axes_and_settings_are_left_alone():
    plt.rcParams["lines.linewidth"] = 3.0  # a user's own setting survives the call ...
    try:
        fig, ax = plt.subplots()
        out = efficiency.plot_efficiency({"m": _cp_table()[0]}, ax=ax)
        assert out is ax
        assert plt.rcParams["lines.linewidth"] == 3.0
        _, own = plt.subplots()
        line, = own.plot([0, 1], [0, 1])  # ... and the user's next plot is drawn in it
        assert line.get_linewidth() == 3.0
    finally:
        plt.rcParams["lines.linewidth"] = matplotlib.rcParamsDefault["lines.linewidth"]


@pytest.mark.slow
def test_notebook_keeps_showing_figures_after_a_styled_one():
    """The first figure of a kernel loads the inline backend, which turns interactive mode on: done
    inside the style block, leaving the block turned it off again and later figures were not shown."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    cells = ["import numpy as np\nimport matplotlib.pyplot as plt\n"
             "from trackstudy.plots.locality import plot_cluster_sizes",
             "plot_cluster_sizes({'a': np.array([1, 2, 2, 5])});",
             "plot_cluster_sizes({'b': np.array([1, 3])});",
             "fig, ax = plt.subplots()\nax.plot([0, 1], [0, 1]);"]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    shown = ["image/png" in o.get("data", {}) for c in nb.cells[1:] for o in c.outputs]
    assert shown == [True, True, True]


def test_style_fonts_are_installed():
    from matplotlib import font_manager

    with hep_style():
        assert matplotlib.rcParams["font.family"] == FONTS
        path = font_manager.findfont(font_manager.FontProperties(family=FONTS), fallback_to_default=False)
    assert "heros" in path.lower()  # TeX Gyre Heros from mplhep's font package, no download


# --- what the figures show ----------------------------------------------------------------------

def test_efficiency_error_bars_are_the_clopper_pearson_bounds():
    table, lo, hi = _cp_table()
    ax = efficiency.plot_efficiency({"m": table}, var="pt")
    c = ax.containers[0]
    assert np.allclose(c.lines[0].get_xdata(), table["centre"])
    assert np.allclose(c.lines[0].get_ydata(), table["eff"])
    xsegs, ysegs = c.lines[2]
    assert np.allclose([s[0][0] for s in xsegs.get_segments()], table["low"])
    assert np.allclose([s[1][0] for s in xsegs.get_segments()], table["high"])
    y_lo = np.array([s[0][1] for s in ysegs.get_segments()])
    y_hi = np.array([s[1][1] for s in ysegs.get_segments()])
    assert np.allclose(y_lo, lo) and np.allclose(y_hi, hi)
    assert y_lo[1] == 0.0 and y_hi[2] == 1.0  # 0/4 starts at 0, 5/5 ends at 1
    assert ax.get_xscale() == "log"


def test_cluster_size_histogram_counts():
    ax = locality.plot_cluster_sizes({"x": np.array([1, 1, 2, 5])})
    (patch,) = [p for p in ax.patches if isinstance(p, StepPatch)]
    values, edges, _ = patch.get_data()
    assert list(edges) == [1, 2, 3, 4, 5, 6, 7]  # integer bins up to the largest size
    assert list(values) == [2, 1, 0, 0, 1, 0]
    assert ax.get_legend().get_texts()[0].get_text() == "x (4 clusters)"


def test_hits_per_layer_heights():
    tables = {"a": pd.DataFrame({"volume_id": [8, 8, 7], "layer_id": [2, 4, 2], "n_hits": [3.0, 1.0, 5.0]}),
              "b": pd.DataFrame({"volume_id": [8], "layer_id": [4], "n_hits": [2.5]})}
    ax = events.plot_hits_per_layer(tables)
    steps = [p for p in ax.patches if isinstance(p, StepPatch)]
    assert [list(p.get_data().values) for p in steps] == [[5.0, 3.0, 1.0], [0.0, 0.0, 2.5]]  # 7:2, 8:2, 8:4
    assert [t.get_text() for t in ax.get_xticklabels()] == ["7:2", "8:2", "8:4"]


def test_particle_distributions_are_densities():
    axes = events.plot_particle_distributions({"tiny": _particles()})
    (nh,) = [p for p in axes[2].patches if isinstance(p, StepPatch)]
    values, edges, _ = nh.get_data()
    expected = np.zeros(30)
    expected[[3, 10, 12]] = [2 / 4, 1 / 4, 1 / 4]  # unit-wide bins: density = fraction of particles
    assert np.allclose(edges, np.arange(-0.5, 30.5)) and np.allclose(values, expected)
    (eta,) = [p for p in axes[1].patches if isinstance(p, StepPatch)]
    values, edges, _ = eta.get_data()
    counts = np.histogram([0.0, 0.0, 0.0, 1.0], edges)[0]
    assert np.allclose(values, counts / (4 * np.diff(edges)))
    assert axes[0].get_legend().get_texts()[0].get_text() == "tiny (4)"


def test_axis_labels_use_the_field_notation(tmp_path):
    table = _cp_table()[0]
    ax = efficiency.plot_efficiency({"m": table})
    assert r"$p_\mathrm{T}$" in ax.get_xlabel() and "[GeV]" in ax.get_xlabel()
    assert ax.get_ylabel() == "Double-majority efficiency"
    eta = table.assign(low=[-1.0, 0.0, 1.0], high=[0.0, 1.0, 2.0], centre=[-0.5, 0.5, 1.5])
    ax = efficiency.plot_efficiency({"m": eta}, var="eta")
    assert r"$\eta$" in ax.get_xlabel() and ax.get_xscale() == "linear"
    fig = efficiency.plot_efficiency_plotly({"m": table})
    assert "p<sub>T</sub>" in fig.layout.xaxis.title.text
    assert fig.layout.yaxis.title.text == "Double-majority efficiency"
    xy, rz = events.plot_views(_hits())
    assert (xy.get_xlabel(), xy.get_ylabel()) == ("$x$ [mm]", "$y$ [mm]")
    assert (rz.get_xlabel(), rz.get_ylabel()) == ("$z$ [mm]", "$r$ [mm]")
    ax = locality.plot_surfaces()
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("$z$ [mm]", "$r$ [mm]")
    assert any(t.get_text() == "TrackML" for t in ax.texts)  # neutral label, no collaboration
    assert not any(w in t.get_text() for t in ax.texts for w in ("ATLAS", "CMS", "Preliminary"))
    axes = events.plot_particle_distributions({"tiny": _particles()})
    assert r"$p_\mathrm{T}$ [GeV]" in axes[0].get_xlabel() and r"$\eta$" in axes[1].get_xlabel()
    maps, _ = _maps()
    profile = _maps_module().attention_profile(maps.weights["encoder"], maps.eta, maps.phi, allowed=maps.allowed)
    axes = attention.plot_attention_profile(profile)
    assert axes[0].get_xlabel() == r"$|\Delta\eta|$" and axes[1].get_xlabel() == r"$|\Delta\phi|$ [rad]"
