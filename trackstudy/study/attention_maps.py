"""Attention inspection: per-layer, per-head attention weights of a trained model on one event,
and how the attention is spread in delta-eta and delta-phi between query and key hits.

The weights come from the encoder's ``explicit`` backend (the same function as dense, flex and
packed attention, materialised), so memory is layers x heads x N^2 floats per stage: use events
of a few thousand hits at most (``max_hits``).

Conventions: ``weights[l][h, i, j]`` is the attention of query hit i on key hit j in layer l,
head h; every row sums to 1 over the keys the mask allows. Delta-eta and delta-phi are those of
the hit positions seen from the origin (|eta_j - eta_i|, |wrapped phi_j - phi_i|).

Summary per (stage, layer, head), each a mean over query hits (:func:`attention_summary`):

    mean_abs_deta, mean_abs_dphi   expected |delta eta| / |delta phi| under the attention
    frac_local                     attention mass with |deta| < eta_window and |dphi| < phi_window
    frac_self                      attention on the query itself
    frac_same_particle             (with particle ids) mass on hits of the query's own particle,
                                   averaged over non-noise queries; noise keys never count
    entropy                        Shannon entropy of the row (nats)
    baseline_*                     the same for uniform attention over the allowed keys, the
                                   reference a learnt pattern is compared with

Profiles (:func:`attention_profile`): attention mass per |deta| and per |dphi| bin (mean over
queries) next to the uniform expectation, in long form for plotly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from trackstudy.errors import ConfigError, DataError
from trackstudy.inference import hit_angles
from trackstudy.kinematics import wrap_phi
from trackstudy.models.attention import AttentionContext
from trackstudy.models.features import hit_features

#: Default bin edges of |delta eta| and |delta phi| (rad) for the profiles.
DETA_EDGES = np.array([0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, np.inf])
DPHI_EDGES = np.array([0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, np.inf])


@dataclass
class AttentionMaps:
    """Attention weights of one event: ``weights[stage]`` is (L, H, N, N) float32 (numpy),
    with the hits' ``hit_id``, ``eta``, ``phi``, ``particle_id`` (or None) and ``allowed`` (N, N)
    bool: the pairs the attention mask permits (same locality cluster)."""

    weights: dict[str, np.ndarray]
    hit_id: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    particle_id: np.ndarray | None
    allowed: np.ndarray


def event_attention(model, hits: pd.DataFrame, *, cluster=None, max_hits: int = 4000) -> AttentionMaps:
    """Attention weights of every layer and head of ``model`` (a TrackModel) on one event.

    hits: x, y, z (mm), hit_id and optionally particle_id (merged with truth); cluster: (N,)
    locality labels the model is used with (None: full attention).
    """
    for col in ("hit_id", "x", "y", "z"):
        if col not in hits.columns:
            raise DataError(f"event_attention: hits have no {col!r} column")
    n = len(hits)
    if n > max_hits:
        raise ConfigError(f"event_attention: {n} hits > max_hits={max_hits}; the maps need layers x heads x "
                          f"N^2 floats: select fewer hits (e.g. one phi sector) or raise max_hits")

    device = next(model.parameters()).device
    x = torch.as_tensor(hit_features(hits, model.feature_cfg, cluster=cluster))[None].to(device)
    eta, phi = hit_angles(hits)
    lab = None if cluster is None else torch.as_tensor(np.asarray(cluster, dtype=np.int64))[None]
    ctx = AttentionContext(torch.ones(1, n, dtype=torch.bool), lab, device=device)
    was_training = model.training
    model.eval()
    try:
        with model.capture_attention() as maps:
            model(x, ctx)
    finally:
        model.train(was_training)
    weights = {stage: torch.stack([m[0] for m in layers]).float().cpu().numpy() for stage, layers in maps.items()}
    if cluster is None:
        allowed = np.ones((n, n), dtype=bool)
    else:
        c = np.asarray(cluster)
        allowed = c[:, None] == c[None, :]
    pid = hits["particle_id"].to_numpy().astype(np.int64) if "particle_id" in hits.columns else None
    return AttentionMaps(weights, hits["hit_id"].to_numpy(), eta, phi, pid, allowed)


def _deltas(eta: np.ndarray, phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    eta = np.asarray(eta, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    return np.abs(eta[None, :] - eta[:, None]), np.abs(wrap_phi(phi[None, :] - phi[:, None]))


def _as_lhnn(weights) -> np.ndarray:
    w = np.asarray(weights.detach().cpu() if isinstance(weights, torch.Tensor) else weights, dtype=np.float64)
    if w.ndim == 2:
        w = w[None, None]
    elif w.ndim == 3:
        w = w[None]
    if w.ndim != 4 or w.shape[-1] != w.shape[-2]:
        raise DataError(f"attention weights must be (N, N), (H, N, N) or (L, H, N, N), got shape {w.shape}")
    return w


def _uniform(allowed: np.ndarray) -> np.ndarray:
    a = allowed.astype(np.float64)
    return a / np.maximum(a.sum(axis=1, keepdims=True), 1.0)


def _row_stats(a: np.ndarray, deta, dphi, local, same, has_pid) -> dict:
    """Per-matrix statistics (a is (N, N), rows are queries)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ent = -np.where(a > 0, a * np.log(a), 0.0).sum(axis=1)
    out = {"mean_abs_deta": float((a * deta).sum(axis=1).mean()),
           "mean_abs_dphi": float((a * dphi).sum(axis=1).mean()),
           "frac_local": float((a * local).sum(axis=1).mean()),
           "frac_self": float(np.diagonal(a).mean()),
           "entropy": float(ent.mean())}
    if same is not None:
        out["frac_same_particle"] = float((a * same).sum(axis=1)[has_pid].mean()) if has_pid.any() else np.nan
    return out


def attention_summary(weights, eta, phi, *, particle_id=None, allowed=None, eta_window: float = 0.1,
                      phi_window: float = 0.1, stage: str = "encoder") -> pd.DataFrame:
    """One row per (stage, layer, head): the statistics of the module docstring, with their
    uniform-attention baselines (columns ``baseline_*``).

    weights: (N, N), (H, N, N) or (L, H, N, N) (numpy or torch); eta, phi: (N,) of the hits;
    particle_id: (N,) int64 or None; allowed: (N, N) bool mask of permitted pairs (None: all).
    """
    w = _as_lhnn(weights)
    n = w.shape[-1]
    eta = np.asarray(eta)
    phi = np.asarray(phi)
    if eta.shape != (n,) or phi.shape != (n,):
        raise DataError(f"attention_summary: eta and phi must have shape ({n},), got {eta.shape}, {phi.shape}")
    deta, dphi = _deltas(eta, phi)
    local = (deta < eta_window) & (dphi < phi_window)
    same, has_pid = None, None
    if particle_id is not None:
        pid = np.asarray(particle_id)
        if not np.issubdtype(pid.dtype, np.integer):
            raise DataError(f"attention_summary: particle ids must be int64, got {pid.dtype}")
        same = (pid[:, None] == pid[None, :]) & (pid[None, :] != 0)
        has_pid = pid != 0
    allowed = np.ones((n, n), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    base = _row_stats(_uniform(allowed), deta, dphi, local, same, has_pid)
    rows = []
    for layer in range(w.shape[0]):
        for head in range(w.shape[1]):
            stats = _row_stats(w[layer, head], deta, dphi, local, same, has_pid)
            rows.append({"stage": stage, "layer": layer, "head": head, **stats,
                         **{f"baseline_{k}": v for k, v in base.items()}})
    return pd.DataFrame(rows)


def attention_profile(weights, eta, phi, *, allowed=None, deta_edges=DETA_EDGES, dphi_edges=DPHI_EDGES,
                      stage: str = "encoder") -> pd.DataFrame:
    """Long table of attention mass per |delta eta| bin and per |delta phi| bin, mean over queries.

    Columns: stage, layer, head, variable ("deta" or "dphi"), lo, hi, mass (sums to 1 over the bins
    of one variable), uniform (mass of uniform attention over the allowed keys).
    """
    w = _as_lhnn(weights)
    n = w.shape[-1]
    deta, dphi = _deltas(eta, phi)
    allowed = np.ones((n, n), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
    u = _uniform(allowed)
    rows = []
    for var, d, edges in (("deta", deta, np.asarray(deta_edges, float)), ("dphi", dphi, np.asarray(dphi_edges, float))):
        if edges[0] > 0 or np.any(np.diff(edges) <= 0):
            raise ConfigError(f"attention_profile: {var} edges must start at 0 and increase, got {edges}")
        idx = np.clip(np.searchsorted(edges, d, side="right") - 1, 0, len(edges) - 2).ravel()
        nb = len(edges) - 1
        uni = np.bincount(idx, weights=u.ravel(), minlength=nb) / n
        for layer in range(w.shape[0]):
            for head in range(w.shape[1]):
                mass = np.bincount(idx, weights=w[layer, head].ravel(), minlength=nb) / n
                for b in range(nb):
                    rows.append((stage, layer, head, var, edges[b], edges[b + 1], mass[b], uni[b]))
    return pd.DataFrame(rows, columns=["stage", "layer", "head", "variable", "lo", "hi", "mass", "uniform"])


def inspect_event(model, hits: pd.DataFrame, *, cluster=None, eta_window: float = 0.1, phi_window: float = 0.1,
                  max_hits: int = 4000) -> tuple[AttentionMaps, pd.DataFrame, pd.DataFrame]:
    """(maps, summary, profile) of one event for every stage, layer and head (notebook 04)."""
    maps = event_attention(model, hits, cluster=cluster, max_hits=max_hits)
    summaries, profiles = [], []
    for stage, w in maps.weights.items():
        summaries.append(attention_summary(w, maps.eta, maps.phi, particle_id=maps.particle_id, allowed=maps.allowed,
                                           eta_window=eta_window, phi_window=phi_window, stage=stage))
        profiles.append(attention_profile(w, maps.eta, maps.phi, allowed=maps.allowed, stage=stage))
    return maps, pd.concat(summaries, ignore_index=True), pd.concat(profiles, ignore_index=True)


__all__ = ["AttentionMaps", "DETA_EDGES", "DPHI_EDGES", "attention_profile", "attention_summary", "event_attention",
           "inspect_event"]
