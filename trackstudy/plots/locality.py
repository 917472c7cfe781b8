"""Figures of notebook 02: projection surfaces, projected hits, cluster sizes, parameter scans.

matplotlib for the static figures, in mplhep's ROOT style scoped to the call
(:func:`trackstudy.plots.style.hep_figure`); plotly (``fig.show()``) for the zoomable projected-hit views.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from trackstudy.data.detector import Detector
from trackstudy.locality.projection import BARREL, ENDCAP_NEG, ENDCAP_POS, Projection, Surfaces
from trackstudy.locality.scan import best
from trackstudy.plots.style import colour, hep_figure, histogram, trackml_label


@hep_figure
def plot_surfaces(*, surfaces: Surfaces | None = None, detector=None, show_strips: bool = False,
                  ax: plt.Axes | None = None) -> plt.Axes:
    """Longitudinal (z, r) view of the projection surfaces and the pixel layers (the papers' figure 1).

    Barrel cylinder in green, endcap planes in red, detector layers in blue (module extents
    from detectors.csv), and dashed lines from the origin through the surface rims: hits
    between them go to the barrel. Labelled **TrackML** *detector geometry*. Returns the axes.
    """
    surfaces = surfaces or Surfaces()
    detector = detector or Detector.load()
    layers = detector.layers
    if not show_strips:
        layers = layers[layers["volume_id"].isin((7, 8, 9))]
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 4.5))
    first = True
    for _, lay in layers.iterrows():
        label = "detector layers" if first else None
        first = False
        if lay["region"] == "barrel":
            ax.plot([lay["z_min"], lay["z_max"]], [lay["r"], lay["r"]], color="tab:blue", lw=2.5, label=label)
        else:
            ax.plot([lay["z"], lay["z"]], [lay["r_min"], lay["r_max"]], color="tab:blue", lw=2.5, label=label)
    R, Z = surfaces.radius, surfaces.z_plane
    ax.plot([-Z, Z], [R, R], color="tab:green", lw=3, label=f"barrel cylinder r = {R:g} mm")
    ax.plot([-Z, -Z], [0, R], color="tab:red", lw=3, label=f"endcap planes z = ±{Z:g} mm")
    ax.plot([Z, Z], [0, R], color="tab:red", lw=3)
    r_top = layers["r_max"].max() * 1.05
    z_top = r_top * Z / R
    for s in (-1, 1):
        ax.plot([0, s * z_top], [0, r_top], color="grey", ls="--", lw=1,
                label="barrel / endcap boundary" if s > 0 else None)
    ax.scatter([0], [0], color="k", s=15, zorder=5, label="origin (projection centre)")
    ax.set(xlabel="$z$ [mm]", ylabel="$r$ [mm]", ylim=(0, r_top))
    ax.set_title("projection surfaces and pixel layers", loc="right")
    ax.legend(fontsize=8, loc="upper left", ncols=2)
    trackml_label(ax, "detector geometry")
    return ax


def _category_colours(values: np.ndarray, seed: int = 0) -> np.ndarray:
    """A value in [0, 1) per distinct category, shuffled so that neighbouring ids get unrelated colours."""
    uniq, inv = np.unique(values, return_inverse=True)
    rng = np.random.default_rng(seed)
    return rng.permutation(len(uniq))[inv.ravel()] / max(len(uniq), 1)


def plot_projection(projection: Projection, color, *, kind: str = "cluster", max_points: int = 60_000,
                    seed: int = 0, title: str | None = None, marker_size: float = 3.0):
    """Projected hits on the three surfaces (plotly): endcap z<0 (x, y), barrel (R*phi, z), endcap z>0 (x, y).

    color: (n,) integer category per hit (cluster label or particle id). kind: "cluster" or
    "particle"; with "particle", id 0 (noise) is drawn in grey. At most ``max_points`` hits
    (seeded random subset). Returns a plotly Figure (call ``fig.show()``).
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    color = np.asarray(color)
    if len(color) != len(projection):
        raise ValueError(f"{len(color)} colours for {len(projection)} projected hits")
    idx = np.arange(len(projection))
    if len(idx) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_points, replace=False))
    shade = _category_colours(color, seed)
    noise = (color == 0) if kind == "particle" else np.zeros(len(color), dtype=bool)
    titles = ("endcap z < 0: (x, y)", "barrel: (R·φ, z)", "endcap z > 0: (x, y)")
    fig = make_subplots(rows=1, cols=3, column_widths=[0.25, 0.5, 0.25], subplot_titles=titles,
                        horizontal_spacing=0.06)
    for col, surface in enumerate((ENDCAP_NEG, BARREL, ENDCAP_POS), start=1):
        sel = idx[projection.surface[idx] == surface]
        for is_noise in (True, False):
            s = sel[noise[sel] == is_noise]
            if len(s) == 0:
                continue
            marker = dict(size=marker_size, color="lightgrey") if is_noise else \
                dict(size=marker_size, color=shade[s], colorscale="Turbo", cmin=0, cmax=1)
            fig.add_trace(go.Scattergl(
                x=projection.u[s], y=projection.v[s], mode="markers", marker=marker, showlegend=False,
                hovertext=[f"{kind} {c}" for c in color[s]], hoverinfo="text+x+y"), row=1, col=col)
    fig.update_xaxes(title_text="x [mm]", row=1, col=1)
    fig.update_xaxes(title_text="R·φ [mm]", row=1, col=2)
    fig.update_xaxes(title_text="x [mm]", row=1, col=3)
    fig.update_yaxes(title_text="y [mm]", row=1, col=1, scaleanchor="x", scaleratio=1)
    fig.update_yaxes(title_text="z on cylinder [mm]", row=1, col=2)
    fig.update_yaxes(title_text="y [mm]", row=1, col=3, scaleanchor="x3", scaleratio=1)
    fig.update_layout(height=520, width=1250, title=title or f"projected hits coloured by {kind}",
                      margin=dict(l=40, r=20, t=70, b=40))
    return fig


@hep_figure
def plot_cluster_sizes(sizes: Mapping[str, np.ndarray], *, bins: int = 40, ax: plt.Axes | None = None,
                       title: str = "cluster size distribution") -> plt.Axes:
    """Histograms (log-spaced integer bins, log counts) of cluster sizes, one step line per entry of
    ``sizes`` (filled with ``hist``, drawn with ``mplhep.histplot``)."""
    import mplhep

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    top = max((int(np.max(s)) for s in sizes.values() if len(s)), default=1)
    edges = np.unique(np.round(np.logspace(0, np.log10(top + 1), bins)).astype(int))
    edges = np.append(edges, edges[-1] + 1)
    for i, (name, s) in enumerate(sizes.items()):
        mplhep.histplot(histogram(s, edges).values(), edges, ax=ax, histtype="step", yerr=False, lw=1.5,
                        color=colour(i), label=f"{name} ({len(s)} clusters)")
    ax.set(xscale="log", yscale="log", xlabel="hits per cluster", ylabel="clusters", title=title)
    ax.legend(fontsize=8)
    return ax


@hep_figure
def plot_scan(scan_df: pd.DataFrame, *, max_reduction: float | None = None, color_by: str | None = None,
              axes: Sequence[plt.Axes] | None = None):
    """Reconstructible ratio against attention reduction for every scanned point, one panel per region.

    Points are coloured by ``color_by`` (default: the panel region's first scanned parameter); the reduction
    budget is a dashed line and the best feasible point a star. Returns the axes.
    """
    if max_reduction is None:
        max_reduction = scan_df.attrs.get("max_reduction", 0.01)
    names = scan_df.attrs.get("grid_names") or []
    regions = [r for r in ("barrel", "endcap") if r in set(scan_df["region"])]
    if axes is None:
        _, axes = plt.subplots(1, len(regions), figsize=(6.5 * len(regions), 4.5), squeeze=False,
                               layout="constrained")
        axes = axes[0]
    top = best(scan_df, max_reduction=max_reduction)
    for ax, region in zip(axes, regions):
        d = scan_df[scan_df["region"] == region]
        # default colour: the first parameter of this region (prefixed or shared)
        own = [n for n in names if n.startswith(f"{region}_") or not n.startswith(("barrel_", "endcap_"))]
        key = color_by or (own[0] if own else None)
        if key:
            sc = ax.scatter(d["attention_reduction"], d["reconstructible_ratio"], c=d[key].to_numpy(np.float64),
                            cmap="viridis", s=25)
            plt.colorbar(sc, ax=ax, label=key)
        else:
            ax.scatter(d["attention_reduction"], d["reconstructible_ratio"], color="tab:blue", s=25)
        ax.axvline(max_reduction, color="grey", ls="--", lw=1, label=f"budget {max_reduction:g}")
        b = top[top["region"] == region]
        if len(b):
            ax.scatter(b["attention_reduction"], b["reconstructible_ratio"], marker="*", s=250,
                       facecolor="none", edgecolor="red", lw=1.5, label="best within budget")
        ax.set(xscale="log", xlabel="attention reduction  Σ s² / N²", ylabel="reconstructible ratio",
               title=f"{scan_df.attrs.get('method', '')} scan: {region}")
        ax.legend(fontsize=8, loc="lower right")
    return axes
