"""Geometric attention: the longitudinal impact parameter of every pair of hits, as an exact
attention bias that every backend computes.

Why. A charged particle from the luminous region leaves its pixel hits on a line
z = z0 + r cot(theta) in the (r, z) plane, with |z0| of a few mm (sigma ~ 6 mm). The line through
hits i and j meets the beam axis at

    z0_ij = (z_i r_j - z_j r_i) / (r_j - r_i),

so the pair's "beam-line residual" ``(z_i r_j - z_j r_i)^2 = z0_ij^2 (r_j - r_i)^2`` is small for
two hits of one particle (whatever their cot(theta)) and grows with the implied z0 of a wrong pair:
the window on z0 that every doublet builder applies. A hit's own features cannot carry it: eta seen
from the origin moves by z0 / r between layers (0.19 for z0 = 6 mm on the innermost barrel layer,
r = 32 mm). (Measured in docs/results.md, "Full events": the barrel particles the study's encoder
loses are those from vertices beyond ~6 mm; this bias, a z0 window centred on zero, did not win
them back at equal training time, because the locality clusters split those tracks first.) The
form is a dot product of two per-hit vectors,

    a_i = (d_i^2, d_i r_i, r_i^2),  b_j = (r_j^2, -2 d_j r_j, d_j^2),  a_i . b_j = (d_i r_j - d_j r_i)^2,

with d = z - r t_c, the hit's offset from its cluster's central line through the origin (t_c the
mean z / r of the cluster: the line's term cancels in the form, and the numbers stay small enough
for float32 at endcap z). So the bias enters scaled dot-product attention as extra query and key
channels: per head ``score_ij += -lambda_h (d_i r_j - d_j r_i)^2 / S^2`` (S = 10 mm x 100 mm,
lambda_h = softplus of a learned parameter, so each head learns how hard a window to apply, or
none). The value gets zero channels of the same width and the content channels are rescaled so
that the softmax scale stays 1 / sqrt(head_dim): every backend (dense, flex, packed, lsh) then
computes this function with no change of its own, and the exact backends still agree with each
other. Attention over these channels runs in float32 (under bf16 autocast the expanded form would
lose the residual to rounding).

Written here because no library provides a pairwise-geometry bias for SDPA / FlexAttention that
works the same in every backend; the channels trick keeps the backends untouched.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from trackstudy.errors import ConfigError, DataError

__all__ = ["GEO_SCALE_MM2", "N_GEO", "GeometricBias", "geometry_from_features", "pair_residual", "pair_vectors"]

#: Normalisation of the beam-line residual: 10 mm of z0 over a 100 mm lever arm.
GEO_SCALE_MM2 = 1000.0
#: Query / key channels the bias adds per head.
N_GEO = 3


def _group_ids(pad_mask: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """(B, T) int64 id of each hit's (row, cluster); one group per row without labels."""
    B, T = pad_mask.shape
    rows = torch.arange(B, device=pad_mask.device)[:, None].expand(B, T)
    if labels is None:
        return rows
    lab = torch.where(pad_mask, labels, torch.zeros((), dtype=labels.dtype, device=labels.device))
    return rows * (int(lab.max()) + 1) + lab


def geometry_from_features(r: torch.Tensor, z: torch.Tensor, pad_mask: torch.Tensor,
                           labels: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, 2) float32 (r, d) in mm of each hit: r = transverse radius, d = z - r t_c, the offset
    from the central line through the origin of its locality cluster (t_c = mean z / r over the
    cluster's real hits; one cluster per row without labels). Padding rows are zero."""
    if r.shape != z.shape or r.shape != pad_mask.shape:
        raise DataError(f"geometry: r {tuple(r.shape)}, z {tuple(z.shape)} and the padding mask "
                        f"{tuple(pad_mask.shape)} must share a (B, T) shape")
    r, z = r.float(), z.float()
    real = pad_mask.to(r.dtype)
    slope = torch.where(pad_mask, z / r.clamp_min(1e-3), torch.zeros((), device=r.device))
    group = _group_ids(pad_mask, labels).reshape(-1)
    n = int(group.max()) + 1
    total = torch.zeros(n, device=r.device).index_add_(0, group, slope.reshape(-1))
    count = torch.zeros(n, device=r.device).index_add_(0, group, real.reshape(-1)).clamp_min(1.0)
    t_c = (total / count)[group].view_as(r)
    d = z - r * t_c
    return torch.stack([r, d], dim=-1) * real[..., None]


def pair_vectors(geometry: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-hit vectors (a, b), each (B, T, 3), with a_i . b_j = ((d_i r_j - d_j r_i) / S)^2."""
    r, d = geometry[..., 0] / math.sqrt(GEO_SCALE_MM2), geometry[..., 1] / math.sqrt(GEO_SCALE_MM2)
    a = torch.stack([d * d, d * r, r * r], dim=-1)
    b = torch.stack([r * r, -2.0 * d * r, d * d], dim=-1)
    return a, b


def pair_residual(geometry: torch.Tensor) -> torch.Tensor:
    """(B, T, T) ((d_i r_j - d_j r_i) / S)^2 computed directly (for tests and inspection)."""
    r, d = geometry[..., 0], geometry[..., 1]
    return ((d[:, :, None] * r[:, None, :] - d[:, None, :] * r[:, :, None]) / GEO_SCALE_MM2) ** 2


class GeometricBias(nn.Module):
    """Per-head strength of the beam-line residual bias and the q / k / v augmentation that applies it
    (see the module docstring). ``init_strength``: lambda of every head at initialisation."""

    def __init__(self, n_heads: int, head_dim: int, init_strength: float = 0.1):
        super().__init__()
        if init_strength <= 0:
            raise ConfigError(f"geometric bias: init_strength must be > 0, got {init_strength}")
        # softplus^-1(init_strength)
        self.raw_strength = nn.Parameter(torch.full((n_heads,), math.log(math.expm1(init_strength))))
        self.head_dim = head_dim
        self.width = -(-(head_dim + N_GEO) // 8) * 8  # a multiple of 8: fused kernels prefer it

    @property
    def strength(self) -> torch.Tensor:
        return F.softplus(self.raw_strength)

    def augment(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, a: torch.Tensor, b: torch.Tensor):
        """q, k, v (B, H, T, hs) and a, b (B, T, 3) -> q', k', v' (B, H, T, width) in float32 whose
        attention (scale 1 / sqrt(width)) is the attention of q, k, v (scale 1 / sqrt(hs)) with the
        bias -lambda_h a_i . b_j added to every score; the output's first hs channels are the
        result (the others are zero)."""
        B, H, T, hs = q.shape
        E = self.width
        pad = E - hs - N_GEO
        q, k, v = q.float(), k.float(), v.float()
        lam = self.strength.float()[None, :, None, None]  # (1, H, 1, 1)
        qx = -lam * math.sqrt(E) * a.float()[:, None]  # (B, H, T, 3)
        kx = b.float()[:, None].expand(B, H, T, N_GEO)
        zq = q.new_zeros(B, H, T, pad)
        q2 = torch.cat([q * math.sqrt(E / hs), qx, zq], dim=-1)
        k2 = torch.cat([k, kx, zq], dim=-1)
        v2 = torch.cat([v, v.new_zeros(B, H, T, E - hs)], dim=-1)
        return q2, k2, v2
