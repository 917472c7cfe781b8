"""``train``: one entry point for every model family. Hit-token models train with
:class:`trackstudy.training.trainer.Trainer`, the edge models (the GNN baseline and the
doublet-token encoder, :data:`~trackstudy.models.heads.EDGE_FAMILIES`) with
:func:`trackstudy.training.gnn.train_gnn` (its own loop over graphs, reusing the trainer's
schedule, logs and checkpoints)."""

from __future__ import annotations

import os
from collections.abc import Callable

from trackstudy.models.heads import EDGE_FAMILIES
from trackstudy.training.gnn import train_gnn
from trackstudy.training.run_config import resolve_config
from trackstudy.training.trainer import Trainer


def train(config: dict | str | os.PathLike, out_dir: str | os.PathLike, *, resume: bool = False,
          progress: bool = True, on_step: Callable[[int, dict], None] | None = None) -> dict:
    """Train a model as described by ``config`` (mapping or YAML path) into ``out_dir``; returns
    the summary (also written to ``out_dir/summary.json``). See :class:`Trainer`; ``gnn`` and
    ``doublet`` runs are trained by :func:`trackstudy.training.gnn.train_gnn`."""
    cfg = resolve_config(config)
    if cfg["model"]["family"] in EDGE_FAMILIES:
        return train_gnn(cfg, out_dir, resume=resume, progress=progress, on_step=on_step)
    return Trainer(cfg, out_dir, resume=resume, progress=progress, on_step=on_step).fit()


__all__ = ["train"]
