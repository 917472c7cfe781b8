"""Attention maps of a trained model next to the locality mask (notebook 04), in mplhep's ROOT
style scoped to the call (:func:`trackstudy.plots.style.hep_figure`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from trackstudy.errors import ConfigError
from trackstudy.plots.style import hep_figure
from trackstudy.study.attention_maps import AttentionMaps


def hit_order(maps: AttentionMaps, cluster=None) -> np.ndarray:
    """Order that puts the hits of one locality cluster together (then by particle, then by eta),
    so a block-diagonal mask and track-like attention both show as blocks on the diagonal."""
    n = len(maps.hit_id)
    keys = [maps.eta]
    if maps.particle_id is not None:
        keys.insert(0, maps.particle_id)
    keys.insert(0, np.zeros(n, dtype=np.int64) if cluster is None else np.asarray(cluster))
    return np.lexsort(keys[::-1])


@hep_figure
def plot_attention_vs_mask(maps: AttentionMaps, *, stage: str = "encoder", layer: int = 0, head: int = 0,
                           cluster=None, max_hits: int = 600, axes=None):
    """Three panels on the same hit order: the mask the attention may use (same locality cluster),
    the learnt attention of one layer/head (log colour scale), and same-particle pairs (truth).
    The first ``max_hits`` hits of that order are shown. Returns the axes."""
    if stage not in maps.weights:
        raise ConfigError(f"stage={stage!r}: the model has stages {', '.join(maps.weights)}")
    w = maps.weights[stage]
    if not (0 <= layer < w.shape[0] and 0 <= head < w.shape[1]):
        raise ConfigError(f"layer={layer}, head={head}: the {stage} has {w.shape[0]} layers x {w.shape[1]} heads")
    order = hit_order(maps, cluster)[:max_hits]
    att = w[layer, head][np.ix_(order, order)]
    panels = [("allowed by the mask", maps.allowed[np.ix_(order, order)].astype(float), "Greys", None),
              (f"attention, layer {layer} head {head}", np.log10(np.maximum(att, 1e-6)), "viridis", (-6, 0))]
    if maps.particle_id is not None:
        pid = maps.particle_id[order]
        panels.append(("same particle (truth)", ((pid[:, None] == pid[None, :]) & (pid[None, :] != 0)).astype(float),
                       "Greys", None))
    if axes is None:
        _, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), layout="constrained")
    for ax, (title, img, cmap, lim) in zip(axes, panels):
        im = ax.imshow(img, cmap=cmap, interpolation="nearest", vmin=None if lim is None else lim[0],
                       vmax=None if lim is None else lim[1])
        ax.set(title=title, xlabel="key hit", ylabel="query hit")
        if lim is not None:
            plt.colorbar(im, ax=ax, fraction=0.046, label=r"$\log_{10}$ weight")
    return axes


@hep_figure
def plot_attention_profile(profile: pd.DataFrame, *, stage: str = "encoder", axes=None):
    """Attention mass per |delta eta| and |delta phi| bin, one line per layer (mean over heads),
    with uniform attention over the allowed keys as the dashed reference. Returns the axes."""
    p = profile[profile["stage"] == stage]
    if p.empty:
        raise ConfigError(f"stage={stage!r} is not in the profile (stages: {', '.join(profile['stage'].unique())})")
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, var, label in zip(axes, ("deta", "dphi"), (r"$|\Delta\eta|$", r"$|\Delta\phi|$ [rad]")):
        v = p[p["variable"] == var]
        bins = v[["lo", "hi"]].drop_duplicates().reset_index(drop=True)
        x = np.arange(len(bins))
        for layer, g in v.groupby("layer"):
            ax.plot(x, g.groupby("lo", sort=True)["mass"].mean().to_numpy(), "o-", label=f"layer {layer}",
                    color=plt.cm.viridis(layer / max(1, v["layer"].max())))
        ax.plot(x, v.groupby("lo", sort=True)["uniform"].mean().to_numpy(), "k--", label="uniform over mask")
        ax.set_xticks(x, [f"<{h:g}" if np.isfinite(h) else f">{lo:g}" for lo, h in zip(bins["lo"], bins["hi"])],
                      rotation=45)
        ax.set(xlabel=label, ylabel="attention mass", yscale="log", title=f"attention vs {label}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return axes


@hep_figure
def plot_locality_summary(summary: pd.DataFrame, *, metric: str = "frac_local", ax=None):
    """Heat map layer x head of one summary statistic minus its uniform-attention baseline
    (positive: the head is more local / more on the same particle than chance)."""
    if metric not in summary or f"baseline_{metric}" not in summary:
        raise ConfigError(f"metric={metric!r}: not a column of the attention summary")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    s = summary.assign(excess=summary[metric] - summary[f"baseline_{metric}"])
    table = s.pivot_table(index="layer", columns="head", values="excess", aggfunc="mean")
    # at least +-0.05 on the colour scale: rounding-level differences must not look like structure
    lim = max(float(np.nanmax(np.abs(table.to_numpy()))), 0.05)
    im = ax.imshow(table.to_numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set(xlabel="head", ylabel="layer", title=f"{metric} − uniform baseline")
    ax.set_xticks(range(table.shape[1]))
    ax.set_yticks(range(table.shape[0]))
    plt.colorbar(im, ax=ax)
    return ax


__all__ = ["hit_order", "plot_attention_profile", "plot_attention_vs_mask", "plot_locality_summary"]
