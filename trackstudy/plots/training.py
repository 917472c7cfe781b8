"""Training curves of one or several runs (``runs/NAME/log_steps.csv`` and ``log_val.csv``), in
mplhep's ROOT style scoped to the call (:func:`trackstudy.plots.style.hep_figure`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from trackstudy.errors import DataError
from trackstudy.plots.style import colour, hep_figure


def read_logs(run_dir: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-step and per-evaluation logs of a run (empty frames where a log is missing)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run folder")
    out = []
    for name in ("log_steps.csv", "log_val.csv"):
        path = run_dir / name
        out.append(pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame())
    return out[0], out[1]


@hep_figure
def plot_training_curves(runs: Mapping[str, str | os.PathLike], *, smooth: int = 10, axes=None, logy: bool = True):
    """Training loss (running mean over ``smooth`` steps) and validation loss against the step,
    one colour per run; the learning rate on a second panel. Returns the axes."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4))
    ax_loss, ax_lr = axes
    for i, (name, folder) in enumerate(runs.items()):
        steps, val = read_logs(folder)
        c = colour(i)
        if not steps.empty and "loss" in steps:
            ax_loss.plot(steps["step"], steps["loss"].rolling(max(1, smooth), min_periods=1).mean(),
                         color=c, label=f"{name} train")
            if "lr" in steps:
                ax_lr.plot(steps["step"], steps["lr"], color=c, label=name)
        if not val.empty and "val_loss" in val:
            ax_loss.plot(val["step"], val["val_loss"], "o--", color=c, label=f"{name} validation")
    ax_loss.set(xlabel="step", ylabel="loss", title="loss")
    ax_lr.set(xlabel="step", ylabel="learning rate", title="schedule")
    if logy:
        ax_loss.set_yscale("symlog", linthresh=1e-2)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return axes


@hep_figure
def plot_validation_tracks(runs: Mapping[str, str | os.PathLike], *, ax=None):
    """Validation DM efficiency (solid) and fake rate (dashed) against minutes of training, one
    colour per run: the tracks formed at every evaluation with the run's track parameters of the
    time (``train.eval_tracks``; before the end-of-training tuning). Returns the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for i, (name, folder) in enumerate(runs.items()):
        _, val = read_logs(folder)
        if val.empty or "val_dm_efficiency" not in val:
            continue
        minutes = val["train_seconds"] / 60.0
        ax.plot(minutes, val["val_dm_efficiency"], "o-", color=colour(i), label=f"{name} double-majority efficiency")
        ax.plot(minutes, val["val_fake_rate"], "s--", color=colour(i), label=f"{name} fake rate")
    ax.set(xlabel="training time (min)", ylabel="fraction", ylim=(0, 1.02),
           title=r"validation tracks during training ($p_\mathrm{T}$ > 0.9 GeV)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return ax


__all__ = ["plot_training_curves", "plot_validation_tracks", "read_logs"]
