"""Efficiency and fake-rate figures in the HEP convention: markers at bin centres, x error =
half the bin width, asymmetric (Clopper-Pearson) y errors, several models on one figure.

The matplotlib figures are drawn in mplhep's ROOT style, scoped to the call
(:func:`trackstudy.plots.style.hep_figure`).

matplotlib versions (``ax=`` in, axes out) are for static reports; plotly versions (figure out,
``fig.show()`` in notebooks) for interactive views. Inputs are the tables of
:func:`trackstudy.metrics.binned_efficiency` / :func:`trackstudy.metrics.binned_fake_rate`,
one per model, as a dict ``{model name: table}``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from trackstudy.errors import ConfigError
from trackstudy.metrics.binned import TABLE_COLUMNS, binned_efficiency, binned_fake_rate
from trackstudy.metrics.evaluate import Evaluation
from trackstudy.plots.style import colour, hep_figure

AXIS_LABELS = {
    "pt": r"particle $p_\mathrm{T}$ [GeV]",
    "eta": r"particle $\eta$",
    "phi": r"particle $\phi$ [rad]",
    "vz": r"production vertex $z$ [mm]",
}
PLOTLY_AXIS_LABELS = {"pt": "particle p<sub>T</sub> [GeV]", "eta": "particle η", "phi": "particle φ [rad]",
                      "vz": "production vertex z [mm]"}
KIND_LABELS = {"dm": "Double-majority efficiency", "perfect": "Perfect-match efficiency",
               "lhc": "LHC efficiency", "fake": "Fake rate"}
TRACK_AXIS_LABELS = {"pt": r"track $p_\mathrm{T}$ (circle fit) [GeV]", "eta": r"track $\eta$ (line fit)",
                     "phi": r"track $\phi$ [rad]"}
PLOTLY_TRACK_AXIS_LABELS = {"pt": "track p<sub>T</sub> (circle fit) [GeV]", "eta": "track η (line fit)",
                            "phi": "track φ [rad]"}
REGION_METRIC_LABELS = {"dm_efficiency": KIND_LABELS["dm"], "perfect_efficiency": KIND_LABELS["perfect"],
                        "lhc_efficiency": KIND_LABELS["lhc"], "fake_rate": KIND_LABELS["fake"]}
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">")


def _check_tables(tables: Mapping[str, pd.DataFrame]) -> None:
    if not isinstance(tables, Mapping) or not tables:
        raise ConfigError("tables: expected a non-empty dict {model name: binned table}")
    for name, t in tables.items():
        missing = [c for c in TABLE_COLUMNS if c not in t.columns]
        if missing:
            raise ConfigError(f"table of {name!r}: missing column(s) {', '.join(missing)} "
                              f"(use trackstudy.metrics.binned_efficiency)")


def efficiency_tables(evaluations: Mapping[str, Evaluation] | list[Evaluation], var: str = "pt", *,
                      kind: str = "dm", pt_min: float = 0.9, min_hits: int = 3, eta_max: float = 4.0,
                      region: str | None = None, edges=None) -> dict[str, pd.DataFrame]:
    """Binned tables for several models: ``kind`` dm / perfect / lhc efficiency, or ``fake`` (fake
    rate in bins of the tracks' estimated pt / eta / phi)."""
    if not isinstance(evaluations, Mapping):
        evaluations = {ev.name: ev for ev in evaluations}
    out = {}
    for name, ev in evaluations.items():
        if kind == "fake":
            out[name] = binned_fake_rate(ev.tracks, var, edges, min_hits=min_hits, region=region)
        else:
            out[name] = binned_efficiency(ev.particles, var, edges, kind=kind, pt_min=pt_min, min_hits=min_hits,
                                          eta_max=eta_max, region=region)
    return out


@hep_figure
def plot_efficiency(tables: Mapping[str, pd.DataFrame], *, var: str = "pt", kind: str = "dm", ax=None,
                    logx: bool | None = None, title: str | None = None, ylim=(0.0, 1.05)):
    """Efficiency (or fake rate) vs ``var`` for several models on one matplotlib axes; returns the axes.

    Empty bins (NaN) are not drawn. logx defaults to True for pT.
    """
    import matplotlib.pyplot as plt

    _check_tables(tables)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.4))
    n = len(tables)
    for i, (name, t) in enumerate(tables.items()):
        ok = t["eff"].notna().to_numpy()
        width = (t["high"] - t["low"]).to_numpy()
        # small horizontal offsets keep overlapping models readable; x errors still span the bin
        shift = (i - (n - 1) / 2) * 0.06 * width / max(n, 1) if n > 1 else 0.0
        x = (t["centre"].to_numpy() + shift)[ok]
        ax.errorbar(x, t["eff"].to_numpy()[ok],
                    xerr=[(x - t["low"].to_numpy()[ok]), (t["high"].to_numpy()[ok] - x)],
                    yerr=[t["err_low"].to_numpy()[ok], t["err_high"].to_numpy()[ok]],
                    fmt=MARKERS[i % len(MARKERS)], color=colour(i), ms=5, capsize=0, elinewidth=1.0, label=name)
    ax.set_xlabel((TRACK_AXIS_LABELS if kind == "fake" else AXIS_LABELS).get(var, var))
    ax.set_ylabel(KIND_LABELS.get(kind, kind))
    if ylim is not None:
        ax.set_ylim(*ylim)
    if logx if logx is not None else var == "pt":
        ax.set_xscale("log")
        first = next(iter(tables.values()))
        ticks = np.unique(np.r_[first["low"].to_numpy(), first["high"].to_numpy()])
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{v:g}" for v in ticks])
        ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize="small")
    if title:
        ax.set_title(title)
    return ax


def plot_efficiency_plotly(tables: Mapping[str, pd.DataFrame], *, var: str = "pt", kind: str = "dm",
                           logx: bool | None = None, title: str | None = None):
    """Plotly version of :func:`plot_efficiency`; returns the figure."""
    import plotly.graph_objects as go

    _check_tables(tables)
    fig = go.Figure()
    symbols = ("circle", "square", "triangle-up", "triangle-down", "diamond", "cross", "x")
    for i, (name, t) in enumerate(tables.items()):
        ok = t["eff"].notna().to_numpy()
        c = t["centre"].to_numpy()[ok]
        fig.add_trace(go.Scatter(
            x=c, y=t["eff"].to_numpy()[ok], mode="markers", name=name,
            marker={"symbol": symbols[i % len(symbols)], "size": 8},
            error_x={"type": "data", "symmetric": False, "array": t["high"].to_numpy()[ok] - c,
                     "arrayminus": c - t["low"].to_numpy()[ok], "thickness": 1, "width": 0},
            error_y={"type": "data", "symmetric": False, "array": t["err_high"].to_numpy()[ok],
                     "arrayminus": t["err_low"].to_numpy()[ok], "thickness": 1, "width": 0},
            customdata=np.c_[t["n_pass"].to_numpy()[ok], t["n_total"].to_numpy()[ok]],
            hovertemplate="%{x:.3g}: %{y:.3f} (%{customdata[0]}/%{customdata[1]})<extra>" + name + "</extra>",
        ))
    fig.update_layout(
        title=title, xaxis_title=(PLOTLY_TRACK_AXIS_LABELS if kind == "fake" else PLOTLY_AXIS_LABELS).get(var, var),
        yaxis_title=KIND_LABELS.get(kind, kind),
        yaxis_range=[0, 1.05], template="plotly_white", width=720, height=440,
    )
    if logx if logx is not None else var == "pt":
        fig.update_xaxes(type="log")
    return fig


@hep_figure
def plot_region_summary(summary: pd.DataFrame, *, ax=None, metric: str = "dm_efficiency"):
    """Bar chart of a metric in barrel vs endcap per model (rows of :func:`summary_table` style
    frames holding ``barrel_<metric>`` and ``endcap_<metric>``); returns the axes."""
    import matplotlib.pyplot as plt

    cols = [f"barrel_{metric}", f"endcap_{metric}"]
    missing = [c for c in cols if c not in summary.columns]
    if missing:
        raise ConfigError(f"summary: missing column(s) {', '.join(missing)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 3.6))
    x = np.arange(len(summary))
    ax.bar(x - 0.2, summary[cols[0]].to_numpy(dtype=float), 0.4, color=colour(0), label="barrel")
    ax.bar(x + 0.2, summary[cols[1]].to_numpy(dtype=float), 0.4, color=colour(1), label="endcap")
    ax.set_xticks(x)
    ax.set_xticklabels([str(i) for i in summary.index], rotation=20)
    ax.set_ylabel(REGION_METRIC_LABELS.get(metric, metric.replace("_", " ")))
    ax.set_ylim(0, 1.05)
    ax.legend(frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return ax


def region_table(evaluations: Mapping[str, Evaluation] | list[Evaluation]) -> pd.DataFrame:
    """Barrel vs endcap: DM / perfect / LHC efficiency, fake rate and counts per model (means over events)."""
    if not isinstance(evaluations, Mapping):
        evaluations = {ev.name: ev for ev in evaluations}
    rows = []
    for name, ev in evaluations.items():
        for reg in ("barrel", "endcap"):
            s = ev.summary
            rows.append({"model": name, "region": reg,
                         **{k: s.get(f"{reg}_{k}", np.nan) for k in
                            ("dm_efficiency", "perfect_efficiency", "lhc_efficiency", "fake_rate",
                             "n_particles", "n_tracks")}})
    return pd.DataFrame(rows).set_index(["model", "region"])
