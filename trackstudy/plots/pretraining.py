"""Figures of notebook 08 (tokens and pretraining): tokens vs pile-up, codebook usage, decoded
hits, the masked-prediction curve and the label-efficiency curve. Each takes the tables of
:mod:`trackstudy.study.pretraining` and an optional ``ax``, and returns the axes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from trackstudy.errors import DataError
from trackstudy.plots.style import colour, hep_figure

__all__ = ["plot_codebook_usage", "plot_label_efficiency", "plot_masked_curve", "plot_reconstruction",
           "plot_token_counts"]


@hep_figure
def plot_token_counts(table: pd.DataFrame, *, ax=None):
    """Hit tokens per event (and codes used, when the table has them) against pile-up."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    mean = table.groupby("pileup").mean(numeric_only=True).reset_index()
    ax.plot(table["pileup"], table["tokens"], "o", color=colour(0), alpha=0.4)
    ax.plot(mean["pileup"], mean["tokens"], "-", color=colour(0), label="hit tokens (pixel hits)")
    if "codes_used" in table:
        ax.plot(mean["pileup"], mean["codes_used"], "s--", color=colour(1), label="distinct VQ codes")
    ax.set(xlabel=r"pile-up $\mu$", ylabel="per event", title="tokens per event")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


@hep_figure
def plot_codebook_usage(counts, *, ax=None):
    """Hits per code, codes sorted by use (dead codes at the right, at zero)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    c = np.sort(np.asarray(counts))[::-1]
    ax.bar(np.arange(len(c)), c, width=1.0, color=colour(0))
    ax.set(xlabel="code (sorted by use)", ylabel="hits", title=f"codebook usage: {int((c > 0).sum())} of {len(c)} codes")
    ax.set_yscale("symlog", linthresh=1)
    return ax


@hep_figure
def plot_reconstruction(hits: pd.DataFrame, *, axes=None, max_points: int = 3000):
    """Decoded vs true hits: x-y view (true and decoded positions) and the azimuth error (rad)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    if not {"x_true", "y_true", "x_decoded", "y_decoded"} <= set(hits):
        raise DataError("plot_reconstruction: the table needs x and y (true and decoded)")
    h = hits.iloc[:max_points]
    ax_xy, ax_phi = axes
    ax_xy.plot(h["x_true"], h["y_true"], ".", ms=2, color=colour(0), label="true")
    ax_xy.plot(h["x_decoded"], h["y_decoded"], ".", ms=2, color=colour(2), label="decoded")
    ax_xy.set(xlabel="x (mm)", ylabel="y (mm)", title="hits and their decoded codes", aspect="equal")
    ax_xy.legend(fontsize=8, markerscale=4)
    dphi = np.mod(hits["phi_decoded"] - hits["phi_true"] + np.pi, 2 * np.pi) - np.pi
    ax_phi.hist(dphi, bins=60, color=colour(0))
    ax_phi.set(xlabel=r"$\phi_\mathrm{decoded} - \phi_\mathrm{true}$ (rad)", ylabel="hits", title="azimuth error")
    return axes


@hep_figure
def plot_masked_curve(curve: pd.DataFrame, *, axes=None):
    """Masked-hit validation: code accuracy and azimuth error of the masked hits against the step."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax_acc, ax_phi = axes
    if "val_code_accuracy" in curve:
        ax_acc.plot(curve["step"], curve["val_code_accuracy"], "o-", color=colour(0))
    ax_acc.set(xlabel="step", ylabel="top-1 accuracy", title="masked hits: VQ code")
    if "val_phi_error_rad" in curve:
        ax_phi.plot(curve["step"], curve["val_phi_error_rad"], "o-", color=colour(1))
    ax_phi.set(xlabel="step", ylabel=r"mean $|\Delta\phi|$ (rad)", title="masked hits: azimuth")
    for ax in axes:
        ax.grid(alpha=0.3)
    return axes


@hep_figure
def plot_label_efficiency(table: pd.DataFrame, *, ax=None):
    """DM efficiency on held-out events against the number of labelled training events, one line per
    initialisation (from scratch, pretrained)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for i, (init, rows) in enumerate(table.sort_values("n_labelled").groupby("init", sort=False)):
        ax.plot(rows["n_labelled"], rows["dm_efficiency"], "o-", color=colour(i), label=init)
    ax.set_xscale("log")
    ax.set(xlabel="labelled training events", ylabel="DM efficiency (held-out)", title="label efficiency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax
