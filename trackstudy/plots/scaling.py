"""Latency and scaling figures: encoder time and memory versus hits on log-log axes per attention
backend (with the fitted slope in the legend), and the per-stage latency next to the paper's.

Inputs are the tables of :mod:`trackstudy.bench.scaling` (``ScalingResult.results``: backend,
n_hits, seconds, total_seconds, peak_mb, status) and :func:`trackstudy.bench.latency.compare_with_paper`.
matplotlib versions take ``ax=`` and return the axes; plotly versions return the figure. Every
figure names the device it was measured on (``device=``). The matplotlib figures are drawn in
mplhep's ROOT style, scoped to the call (:func:`trackstudy.plots.style.hep_figure`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trackstudy.bench.scaling import fit_slope
from trackstudy.errors import ConfigError
from trackstudy.plots.style import colour, hep_figure

METRICS = {"seconds": "encoder forward [s]", "total_seconds": "masks + encoder forward [s]",
           "peak_mb": "peak memory of one call [MB]"}
MARKERS = ("o", "s", "^", "D", "v", "P")
_RESULT_COLUMNS = ("backend", "n_hits", "status")


def _points(results: pd.DataFrame, metric: str):
    """(backend, n (k,), y (k,), slope or None) for each backend, measured points only."""
    if metric not in METRICS:
        raise ConfigError(f"metric {metric!r}: expected one of {', '.join(METRICS)}")
    missing = [c for c in (*_RESULT_COLUMNS, metric) if c not in results.columns]
    if missing:
        raise ConfigError(f"scaling results: missing column(s) {', '.join(missing)} "
                          "(use trackstudy.bench.scaling.run_scaling(...).results)")
    out = []
    for backend, g in results.groupby("backend", sort=False):
        ok = g[(g["status"] == "ok") & g[metric].notna()]
        n = ok["n_hits"].to_numpy(dtype=float)
        y = ok[metric].to_numpy(dtype=float)
        keep = y > 0
        out.append((backend, n[keep], y[keep], fit_slope(n[keep], y[keep])))
    return out


@hep_figure
def plot_scaling(results: pd.DataFrame, *, metric: str = "seconds", device: str | None = None, ax=None,
                 title: str | None = None):
    """``metric`` (seconds, total_seconds or peak_mb) versus hits per backend on log-log axes, with
    a dashed power-law fit; the legend gives each slope. Backends that did not run at some hit
    count are simply missing there. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.4))
    points = _points(results, metric)
    for i, (backend, n, y, slope) in enumerate(points):
        if not len(n):
            continue
        label = backend if slope is None else f"{backend} (slope {slope:.2f})"
        line, = ax.plot(n, y, marker=MARKERS[i % len(MARKERS)], ls="-", color=colour(i), label=label)
        if slope is not None:
            a = np.polyfit(np.log(n), np.log(y), 1)
            xs = np.geomspace(n.min(), n.max(), 32)
            ax.plot(xs, np.exp(np.polyval(a, np.log(xs))), ls="--", lw=0.8, color=line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = np.unique(np.concatenate([n for _, n, _, _ in points] or [np.zeros(0)]))
    if len(ticks):
        ax.set_xticks(ticks)
        ax.set_xticklabels([f"{v:,.0f}" for v in ticks])
        ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel("hits per event")
    ax.set_ylabel(METRICS[metric])
    ax.grid(alpha=0.3, which="both")
    ax.legend(frameon=False, fontsize="small")
    ax.set_title(title or (f"{METRICS[metric]} on {device}" if device else METRICS[metric]), fontsize="medium")
    return ax


def plot_scaling_plotly(results: pd.DataFrame, *, metric: str = "seconds", device: str | None = None,
                        title: str | None = None):
    """Plotly version of :func:`plot_scaling`; returns the figure."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for backend, n, y, slope in _points(results, metric):
        if not len(n):
            continue
        name = backend if slope is None else f"{backend} (slope {slope:.2f})"
        fig.add_trace(go.Scatter(x=n, y=y, mode="lines+markers", name=name,
                                 hovertemplate="%{x:.0f} hits: %{y:.4g}<extra>" + backend + "</extra>"))
    fig.update_layout(title=title or (f"{METRICS[metric]} on {device}" if device else METRICS[metric]),
                      xaxis_title="hits per event", yaxis_title=METRICS[metric], template="plotly_white",
                      width=720, height=440)
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return fig


@hep_figure
def plot_stage_shares(comparison: pd.DataFrame, *, ax=None, title: str | None = None):
    """Share of each pipeline component in the total, ours next to the paper's (a table of
    :func:`trackstudy.bench.latency.compare_with_paper`); returns the axes."""
    import matplotlib.pyplot as plt

    need = ("component", "ours_share", "paper_share")
    missing = [c for c in need if c not in comparison.columns]
    if missing:
        raise ConfigError(f"comparison: missing column(s) {', '.join(missing)} "
                          "(use trackstudy.bench.latency.compare_with_paper)")
    parts = comparison[comparison["component"] != "total"]
    ours_col = next((c for c in comparison.columns if c.startswith("ours ms")), None)
    device = ours_col[len("ours ms ("):-1] if ours_col else "here"
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 2.6))
    labels = [f"ours ({device})", "paper (H100)"]
    left = np.zeros(2)
    for i, row in enumerate(parts.itertuples()):
        widths = np.array([row.ours_share, row.paper_share], dtype=float)
        ax.barh(labels, widths, left=left, color=colour(i), label=row.component)
        for j, w in enumerate(widths):
            if w > 0.06:
                ax.text(left[j] + w / 2, j, f"{w:.0%}", ha="center", va="center", fontsize="small")
        left += widths
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the total latency")
    ax.legend(frameon=False, fontsize="small", ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    ax.set_title(title or "where the time goes", fontsize="medium")
    return ax


__all__ = ["METRICS", "plot_scaling", "plot_scaling_plotly", "plot_stage_shares"]
