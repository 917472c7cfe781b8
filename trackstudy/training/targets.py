"""Training targets and batches: the label of every hit for each model family, samples, collation.

Road classes and track parameters are defined with the heads that predict them
(:mod:`trackstudy.models.roads`); this module computes them for the hits of an event:

* ``class_targets``: the road class of each hit's particle (noise: class ``n_classes`` or
  :data:`IGNORE_INDEX`, see :mod:`trackstudy.models.roads`);
* ``regression_targets``: theta, sin phi, cos phi, q of each hit's particle;
* particle ids for the contrastive loss;

and :func:`make_sample` / :func:`collate` turn events into padded batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from trackstudy.errors import ConfigError, DataError
from trackstudy.kinematics import hit_eta_phi
from trackstudy.models.features import hit_features
from trackstudy.models.roads import (
    IGNORE_INDEX,
    REG_TARGETS,
    RoadBinning,
    particle_columns,
    particle_parameters,
)

#: Padding value of particle ids in batches (noise is 0, real particles > 0).
PAD_PARTICLE_ID = -1


def class_targets(df: pd.DataFrame, binning: RoadBinning, *, noise: str = "class",
                  source: str = "hits") -> np.ndarray:
    """(N,) int64 road class per hit of a merged table; noise hits per ``noise`` ("class"/"ignore")."""
    if noise not in ("class", "ignore"):
        raise ConfigError(f"noise must be 'class' or 'ignore', got {noise!r}")
    pid, params = particle_columns(df, source, "the road classes")
    out = np.full(len(df), binning.n_classes if noise == "class" else IGNORE_INDEX, dtype=np.int64)
    real = pid != 0
    out[real] = binning.classes(params["phi"][real], params["theta"][real], params["p"][real], params["q"][real])
    return out


def regression_targets(df: pd.DataFrame, *, source: str = "hits") -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) float32 (theta, sin phi, cos phi, q) of each hit's particle and an (N,) bool mask
    (False for noise hits, whose targets are 0 and must not be trained)."""
    pid, params = particle_columns(df, source, "the regression targets")
    real = pid != 0
    t = np.stack([params["theta"], np.sin(params["phi"]), np.cos(params["phi"]), params["q"]], axis=-1)
    t[~real] = 0.0
    return t.astype(np.float32), real


def event_targets(df: pd.DataFrame, binning: RoadBinning | None = None, *, noise: str = "class",
                  source: str = "hits") -> dict[str, np.ndarray]:
    """All per-hit targets of one event (merged table, one row per hit, in the model's hit order).

    Keys: ``particle_id`` (int64, 0 = noise), ``pt`` (float32 GeV of the particle, 0 for noise),
    ``reg_target`` (N, 4) float32, ``reg_mask`` (N,) bool and, with a binning, ``cls_target`` (N,) int64.
    """
    pid, params = particle_columns(df, source, "the targets")
    reg, mask = regression_targets(df, source=source)
    real = pid != 0
    pt = np.where(real, np.hypot(df["px"].to_numpy(np.float64), df["py"].to_numpy(np.float64)), 0.0)
    out = {"particle_id": pid, "pt": pt.astype(np.float32), "reg_target": reg, "reg_mask": mask}
    if binning is not None:
        out["cls_target"] = class_targets(df, binning, noise=noise, source=source)
    return out


def make_sample(df: pd.DataFrame, *, feature_cfg=None, binning: RoadBinning | None = None, cluster=None,
                noise: str = "class", with_targets: bool = True, source: str = "hits") -> dict[str, np.ndarray]:
    """One event as a dict of per-hit arrays for :func:`collate` (rows in ``df`` order).

    Keys: ``x`` (N, F) features, ``hit_id``, ``eta``/``phi`` of the hit positions (for the lsh
    backend), ``cluster`` when locality labels (N,) are given and, with ``with_targets`` (needs a
    merged table with truth), the keys of :func:`event_targets`.
    """

    if "hit_id" not in df.columns:
        raise DataError(f"{source}: column 'hit_id' is missing")
    out = {"x": hit_features(df, feature_cfg, source=source, cluster=cluster),
           "hit_id": df["hit_id"].to_numpy().astype(np.int64)}
    x, y, z = (df[c].to_numpy(np.float64) for c in ("x", "y", "z"))
    out["eta"], out["phi"] = hit_eta_phi(x, y, z)
    if cluster is not None:
        c = np.asarray(cluster)
        if c.shape != (len(df),) or not np.issubdtype(c.dtype, np.integer):
            raise DataError(f"{source}: cluster labels must be {len(df)} integers, got {c.dtype} {c.shape}")
        if (c < 0).any():
            raise DataError(f"{source}: cluster label {int(c[c < 0][0])} < 0 at row {int(np.argmax(c < 0))} "
                            "(every hit needs a locality cluster)")
        out["cluster"] = c.astype(np.int64)
    if with_targets:
        out.update(event_targets(df, binning, noise=noise, source=source))
    return out


#: Value used to pad each batch key (None: the key is not padded but stacked as is).
PAD_VALUES = {"x": 0.0, "pad_mask": False, "cluster": -1, "particle_id": PAD_PARTICLE_ID, "pt": 0.0,
              "reg_target": 0.0, "reg_mask": False, "cls_target": IGNORE_INDEX, "eta": 0.0, "phi": 0.0,
              "hit_id": -1}


def collate(samples: Sequence[dict], pad_to: int | None = None) -> dict[str, torch.Tensor]:
    """Pad per-event samples (dicts of (N_i, ...) arrays with the same keys) into a batch.

    Each sample needs ``x`` (N_i, F); ``pad_mask`` (B, T) bool (True = real hit) is added. Other
    keys are padded with :data:`PAD_VALUES` (cluster -1, particle_id -1, cls_target -100, ...);
    integer arrays stay int64, floats become float32. ``pad_to`` fixes T (>= the longest event).
    """
    if not samples:
        raise ConfigError("collate: no samples")
    keys = list(samples[0].keys())
    if "x" not in keys:
        raise ConfigError("collate: every sample needs an 'x' entry (the input features)")
    lengths = [len(s["x"]) for s in samples]
    t = max(lengths) if pad_to is None else int(pad_to)
    if t < max(lengths):
        raise ConfigError(f"collate: pad_to={pad_to} is shorter than the longest event ({max(lengths)} hits)")
    batch: dict[str, torch.Tensor] = {}
    for key in keys:
        if key == "pad_mask":
            continue
        arrays = []
        for i, s in enumerate(samples):
            if key not in s:
                raise ConfigError(f"collate: sample {i} has no {key!r} entry")
            a = s[key] if isinstance(s[key], torch.Tensor) else torch.from_numpy(np.array(s[key]))
            if a.shape[0] != lengths[i]:
                raise ConfigError(f"collate: sample {i} key {key!r} has {a.shape[0]} rows, x has {lengths[i]}")
            arrays.append(a)
        first = arrays[0]
        dtype = (torch.bool if first.dtype == torch.bool else torch.int64 if not first.is_floating_point()
                 else torch.float32)
        out = torch.full((len(samples), t, *first.shape[1:]), PAD_VALUES.get(key, 0), dtype=dtype)
        for i, a in enumerate(arrays):
            out[i, : lengths[i]] = a.to(dtype)
        batch[key] = out
    mask = torch.zeros(len(samples), t, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    batch["pad_mask"] = mask
    return batch


__all__ = ["IGNORE_INDEX", "PAD_PARTICLE_ID", "PAD_VALUES", "REG_TARGETS", "RoadBinning", "class_targets",
           "collate", "event_targets", "make_sample", "particle_parameters", "regression_targets"]
