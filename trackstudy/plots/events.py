"""Event views and dataset distributions for notebook 01 (matplotlib; plotly for 3D and the browser).

The matplotlib figures are drawn in mplhep's ROOT style, scoped to the call
(:func:`trackstudy.plots.style.hep_figure`); histograms are filled with ``hist`` and drawn with
``mplhep.histplot``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from trackstudy.data.io import Event, add_particle_features
from trackstudy.kinematics import r_xy
from trackstudy.plots.style import colour, hep_figure, histogram

VOLUME_NAMES = {7: "pixel endcap -z", 8: "pixel barrel", 9: "pixel endcap +z", 12: "short strip endcap -z",
                13: "short strip barrel", 14: "short strip endcap +z", 16: "long strip endcap -z",
                17: "long strip barrel", 18: "long strip endcap +z"}


@hep_figure
def plot_views(hits: pd.DataFrame, *, color_by: str = "volume_id", max_points: int = 60_000, seed: int = 0,
               axes: Sequence[plt.Axes] | None = None):
    """x-y and r-z views of hits (mm), coloured by a column (default: detector volume).

    At most ``max_points`` hits are drawn (a seeded random subset) so that full events stay light.
    Returns the two axes.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1, 1.6]})
    if len(hits) > max_points:
        hits = hits.sample(max_points, random_state=seed)
    x, y, z = (hits[c].to_numpy(np.float64) for c in ("x", "y", "z"))
    r = r_xy(x, y)
    for i, (value, idx) in enumerate(hits.groupby(color_by).indices.items()):
        label = VOLUME_NAMES.get(int(value), str(value)) if color_by == "volume_id" else str(value)
        axes[0].scatter(x[idx], y[idx], s=0.3, color=colour(i), label=f"{value}: {label}", rasterized=True)
        axes[1].scatter(z[idx], r[idx], s=0.3, color=colour(i), rasterized=True)
    axes[0].set(xlabel="$x$ [mm]", ylabel="$y$ [mm]", aspect="equal", title="transverse view")
    axes[1].set(xlabel="$z$ [mm]", ylabel="$r$ [mm]", title="longitudinal view")
    # framed: the legend sits on the hits
    axes[0].legend(markerscale=15, fontsize=7, loc="upper right", title=color_by, frameon=True)
    return axes


@hep_figure
def plot_particle_distributions(samples: Mapping[str, pd.DataFrame], *, pt_min: float = 0.0, axes=None):
    """Normalised pT, eta and nhits distributions of several particle tables side by side
    (e.g. ``{"simulated mu=200": sim.particles, "real event 1000": real.particles}``), as step
    histograms (``hist`` + ``mplhep.histplot``); each integrates to one over its bins. Returns the axes."""
    import mplhep

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(15, 4))
    pt_bins = np.logspace(-1.5, 2, 50)
    eta_bins = np.linspace(-4.5, 4.5, 46)
    nh_bins = np.arange(-0.5, 30.5, 1)
    for i, (label, parts) in enumerate(samples.items()):
        parts = add_particle_features(parts)
        parts = parts[parts["pt"] > pt_min]
        for ax, col, bins in zip(axes, ("pt", "eta", "nhits"), (pt_bins, eta_bins, nh_bins)):
            counts = histogram(parts[col], bins).values()  # outside the bins: flow, not drawn
            # density over the drawn bins (as plt.hist(density=True)); an empty sample stays at zero
            density = counts / (counts.sum() * np.diff(bins)) if counts.sum() else counts
            mplhep.histplot(density, bins, ax=ax, histtype="step", yerr=False, color=colour(i),
                            label=f"{label} ({len(parts)})")
    axes[0].set(xscale="log", yscale="log", xlabel=r"particle $p_\mathrm{T}$ [GeV]", ylabel="density [1/GeV]")
    axes[1].set(xlabel=r"particle $\eta$", ylabel="density")
    axes[2].set(xlabel="hits per particle", ylabel="density", yscale="log")
    axes[0].legend(fontsize=8)
    return axes


@hep_figure
def plot_hits_per_layer(tables: Mapping[str, pd.DataFrame], *, volumes: Sequence[int] = (7, 8, 9), ax=None):
    """Hits per (volume, layer) for several datasets, one step histogram each (``mplhep.histplot``)
    over one bin per layer; ``tables`` map a label to a table with columns volume_id, layer_id,
    n_hits (mean per event). Returns the axes."""
    import mplhep

    if ax is None:
        _, ax = plt.subplots(figsize=(14, 4))
    keys = sorted({(int(v), int(layer)) for t in tables.values()
                   for v, layer in t[["volume_id", "layer_id"]].itertuples(index=False) if v in volumes})
    edges = np.arange(len(keys) + 1) - 0.5
    for i, (label, t) in enumerate(tables.items()):
        counts = t.set_index(["volume_id", "layer_id"])["n_hits"]
        vals = np.array([float(counts.get(k, 0.0)) for k in keys])
        mplhep.histplot(vals, edges, ax=ax, histtype="step", yerr=False, color=colour(i), label=label)
    ax.set_xticks(np.arange(len(keys)), [f"{v}:{layer}" for v, layer in keys], rotation=90, fontsize=7)
    ax.set(xlabel="volume:layer", ylabel="hits per event")
    ax.legend(fontsize=8)
    return ax


def event_display_3d(event: Event, *, particle_ids: Sequence[int] | None = None, pt_min: float = 0.0,
                     max_hits: int = 20_000, seed: int = 0):
    """Plotly 3D display: all hits (grey, subsampled to ``max_hits``) and the hits of the chosen
    particles (or of particles above ``pt_min``) as lines ordered by distance from the vertex."""
    import plotly.graph_objects as go

    hits = event.hits
    bg = hits.sample(max_hits, random_state=seed) if len(hits) > max_hits else hits
    fig = go.Figure(go.Scatter3d(x=bg["z"], y=bg["x"], z=bg["y"], mode="markers", name="hits",
                                 marker=dict(size=1, color="lightgrey"), hoverinfo="skip"))
    if event.truth is not None and event.particles is not None:
        parts = add_particle_features(event.particles)
        if particle_ids is None:
            particle_ids = parts.loc[parts["pt"] > pt_min, "particle_id"].to_numpy()[:200]
        pt_of = parts.set_index("particle_id")["pt"]
        merged = hits.merge(event.truth[["hit_id", "particle_id"]], on="hit_id")
        merged = merged[merged["particle_id"].isin(list(particle_ids))]
        for pid, g in merged.groupby("particle_id"):
            g = g.assign(d=np.sqrt(g["x"] ** 2 + g["y"] ** 2 + g["z"] ** 2)).sort_values("d")
            fig.add_trace(go.Scatter3d(x=g["z"], y=g["x"], z=g["y"], mode="lines+markers",
                                       marker=dict(size=2), line=dict(width=2),
                                       name=f"{pid} pT={pt_of.get(pid, np.nan):.2f}"))
    fig.update_layout(scene=dict(xaxis_title="z [mm]", yaxis_title="x [mm]", zaxis_title="y [mm]"),
                      height=650, margin=dict(l=0, r=0, t=30, b=0), showlegend=False,
                      title=f"event {event.event_id}")
    return fig


def event_browser(events: Sequence[Event], *, pt_min: float = 0.9):
    """An ipywidgets browser around :func:`event_display_3d`: pick an event, a pT threshold and
    optionally one particle. Returns the widget (display it in JupyterLab)."""
    import ipywidgets as widgets

    by_id = {e.event_id: e for e in events}
    ev_w = widgets.Dropdown(options=list(by_id), description="event")
    pt_w = widgets.FloatLogSlider(value=pt_min, base=10, min=-1, max=1.5, description="pT min [GeV]")
    pid_w = widgets.Text(value="", description="particle id", placeholder="all above pT min")
    out = widgets.Output()

    def redraw(*_):
        pid = pid_w.value.strip()
        fig = event_display_3d(by_id[ev_w.value], pt_min=pt_w.value, particle_ids=[int(pid)] if pid.isdigit() else None)
        # Set the Output widget's content directly rather than capturing `fig.show()` inside
        # `with out:`: headless execution (papermill/nbclient) waited forever on the captured
        # clear_output(wait=True) of the first draw.
        out.outputs = ()
        out.append_display_data(fig)

    for w in (ev_w, pt_w, pid_w):
        w.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([ev_w, pt_w, pid_w]), out])
