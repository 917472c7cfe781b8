"""Per-hit input features for the encoders, computed from a hits DataFrame.

Each feature is a fixed function of the hit position (x, y, z in mm) with a fixed, documented
scale: nothing is fitted per event, so a feature means the same thing in every event and in
training and inference alike.

    name      value                               default scale
    x, y      x / xy_scale, y / xy_scale          xy_scale = 200 mm  (pixel detector: r <= 176 mm)
    z         z / z_scale                         z_scale = 1500 mm (pixel endcap disks reach |z| ~ 1500 mm)
    r         sqrt(x^2 + y^2) / xy_scale
    sin_phi   sin(phi), phi = atan2(y, x)         (already in [-1, 1])
    cos_phi   cos(phi)
    phi       phi / pi                            (in (-1, 1]; discontinuous at +-pi, prefer sin/cos)
    eta       asinh(z / r) / eta_scale            eta_scale = 5 (pixel hits reach |eta| ~ 4.6); r = 0 is clipped
    theta     atan2(r, z) / pi                    (in [0, 1])

Cluster-relative features (need the hits' locality cluster labels; a locality cluster is a
narrow window in (eta, phi), where the global features differ between neighbouring tracks only
in their third decimal):

    dphi_cl   wrap(phi - phi_c) / local_scale     phi_c = circular mean of the cluster's hit phi
    deta_cl   (eta - eta_c) / local_scale         eta_c = mean of the cluster's hit eta (clipped)

local_scale = 0.1 (rad, units of eta). They depend only on the hit and its own cluster, so a
cluster's features are the same whether it is run alone or inside its full event.

With the defaults the pixel-detector features lie roughly in [-1, 1]. For the full detector
(strips up to r ~ 1025 mm, |z| ~ 3000 mm) use :data:`FULL_DETECTOR_SCALES`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from trackstudy.errors import ConfigError, DataError
from trackstudy.kinematics import MIN_R_MM, hit_eta_phi

#: Every feature this module can compute, in a canonical order.
AVAILABLE_FEATURES = ("x", "y", "z", "r", "sin_phi", "cos_phi", "phi", "eta", "theta", "dphi_cl", "deta_cl")
#: Features that need the hits' locality cluster labels.
CLUSTER_FEATURES = ("dphi_cl", "deta_cl")
#: The default feature list: normalised x, y, z plus r, sin/cos phi and eta.
DEFAULT_FEATURES = ("x", "y", "z", "r", "sin_phi", "cos_phi", "eta")
#: Scales (mm, mm, 1) suited to the pixel detector (volumes 7, 8, 9).
PIXEL_SCALES = {"xy_scale": 200.0, "z_scale": 1500.0, "eta_scale": 5.0}
#: Scales (mm, mm, 1) suited to the whole TrackML detector, strips included.
FULL_DETECTOR_SCALES = {"xy_scale": 1025.0, "z_scale": 3000.0, "eta_scale": 5.0}


@dataclass
class FeatureConfig:
    """Which features, in which order, and the fixed scales used to normalise them."""

    names: tuple[str, ...] = DEFAULT_FEATURES
    xy_scale: float = PIXEL_SCALES["xy_scale"]
    z_scale: float = PIXEL_SCALES["z_scale"]
    eta_scale: float = PIXEL_SCALES["eta_scale"]
    local_scale: float = 0.1

    def __post_init__(self):
        if isinstance(self.names, str):
            self.names = (self.names,)
        self.names = tuple(self.names)
        if not self.names:
            raise ConfigError("FeatureConfig.names: at least one feature is needed")
        unknown = [n for n in self.names if n not in AVAILABLE_FEATURES]
        if unknown:
            raise ConfigError(f"FeatureConfig.names: unknown feature {unknown[0]!r}; "
                              f"choose from {', '.join(AVAILABLE_FEATURES)}")
        if len(set(self.names)) != len(self.names):
            raise ConfigError(f"FeatureConfig.names: duplicated feature in {self.names}")
        for key in ("xy_scale", "z_scale", "eta_scale", "local_scale"):
            value = getattr(self, key)
            if not (np.isfinite(value) and value > 0):
                raise ConfigError(f"FeatureConfig.{key} must be a positive number, got {value!r}")

    @property
    def n_features(self) -> int:
        return len(self.names)

    @property
    def needs_clusters(self) -> bool:
        """True when a feature is relative to the hit's locality cluster (see CLUSTER_FEATURES)."""
        return any(n in CLUSTER_FEATURES for n in self.names)

    def to_dict(self) -> dict:
        """Plain dict (lists, floats) for checkpoints loaded with weights_only=True."""
        d = asdict(self)
        d["names"] = list(self.names)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FeatureConfig:
        return cls(**{**d, "names": tuple(d["names"])})


def _cluster_offsets(eta: np.ndarray, ph: np.ndarray, cluster) -> tuple[np.ndarray, np.ndarray]:
    """(eta - eta_c, wrap(phi - phi_c)) of each hit relative to its cluster's centre (mean eta,
    circular mean phi). Grouped sums with np.bincount: one pass, no Python loop over clusters."""
    c = np.asarray(cluster)
    if c.shape != eta.shape or not np.issubdtype(c.dtype, np.integer):
        raise DataError(f"cluster-relative features: cluster labels must be {eta.shape[0]} integers, "
                        f"got {c.dtype} {c.shape}")
    if c.size and c.min() < 0:
        raise DataError(f"cluster-relative features: cluster label {int(c.min())} < 0 "
                        "(every hit needs a locality cluster)")
    _, inv = np.unique(c, return_inverse=True)
    inv = inv.reshape(-1)
    n = np.bincount(inv).astype(np.float64)
    eta_c = np.bincount(inv, weights=eta) / n
    phi_c = np.arctan2(np.bincount(inv, weights=np.sin(ph)), np.bincount(inv, weights=np.cos(ph)))
    dphi = np.mod(ph - phi_c[inv] + np.pi, 2 * np.pi) - np.pi
    return eta - eta_c[inv], dphi


def feature_array(x, y, z, cfg: FeatureConfig | None = None, cluster=None) -> np.ndarray:
    """(N, F) float32 features of hits at positions x, y, z (mm), columns in ``cfg.names`` order.
    ``cluster``: (N,) locality labels, needed by the cluster-relative features only."""
    cfg = cfg or FeatureConfig()
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    r = np.hypot(x, y)
    eta, ph = hit_eta_phi(x, y, z, dtype=np.float64)
    if cfg.needs_clusters:
        if cluster is None:
            raise ConfigError(f"features {[n for n in cfg.names if n in CLUSTER_FEATURES]} are relative to the "
                              "hit's locality cluster: they need cluster labels (a locality.method other than "
                              "'none')")
        deta, dphi = _cluster_offsets(eta, ph, cluster)
    cols = []
    for name in cfg.names:
        if name == "x":
            cols.append(x / cfg.xy_scale)
        elif name == "y":
            cols.append(y / cfg.xy_scale)
        elif name == "z":
            cols.append(z / cfg.z_scale)
        elif name == "r":
            cols.append(r / cfg.xy_scale)
        elif name == "sin_phi":
            cols.append(np.sin(ph))
        elif name == "cos_phi":
            cols.append(np.cos(ph))
        elif name == "phi":
            cols.append(ph / np.pi)
        elif name == "eta":
            cols.append(eta / cfg.eta_scale)
        elif name == "theta":
            cols.append(np.arctan2(r, z) / np.pi)
        elif name == "dphi_cl":
            cols.append(dphi / cfg.local_scale)
        elif name == "deta_cl":
            cols.append(deta / cfg.local_scale)
    return np.stack(cols, axis=-1).astype(np.float32, copy=False).reshape(len(x), len(cols))


def feature_tensor(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, cfg: FeatureConfig | None = None,
                   cluster: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`feature_array` in torch on the hits' device: (N, F) float32 from x, y, z (mm, computed
    in float64) and, for the cluster-relative features, (N,) int64 labels >= 0 on the same device."""
    cfg = cfg or FeatureConfig()
    x, y, z = (torch.as_tensor(a).to(torch.float64) for a in (x, y, z))
    r = torch.hypot(x, y)
    eta, ph = torch.asinh(z / r.clamp(min=MIN_R_MM)), torch.atan2(y, x)
    if cfg.needs_clusters:
        if cluster is None:
            raise ConfigError(f"features {[n for n in cfg.names if n in CLUSTER_FEATURES]} are relative to the "
                              "hit's locality cluster: they need cluster labels (a locality.method other than "
                              "'none')")
        if cluster.shape != x.shape or (cluster.numel() and int(cluster.min()) < 0):
            raise DataError(f"cluster-relative features: cluster labels must be {x.shape[0]} integers >= 0")
        _, inv = torch.unique(cluster, return_inverse=True)
        k = int(inv.max()) + 1 if inv.numel() else 0

        def s(v):
            return torch.zeros(k, dtype=torch.float64, device=x.device).index_add_(0, inv, v)

        eta_c = s(eta) / s(torch.ones_like(eta))
        phi_c = torch.atan2(s(torch.sin(ph)), s(torch.cos(ph)))
        deta = eta - eta_c[inv]
        dphi = torch.remainder(ph - phi_c[inv] + math.pi, 2 * math.pi) - math.pi
    columns = {"x": lambda: x / cfg.xy_scale, "y": lambda: y / cfg.xy_scale, "z": lambda: z / cfg.z_scale,
               "r": lambda: r / cfg.xy_scale, "sin_phi": lambda: torch.sin(ph), "cos_phi": lambda: torch.cos(ph),
               "phi": lambda: ph / math.pi, "eta": lambda: eta / cfg.eta_scale,
               "theta": lambda: torch.atan2(r, z) / math.pi, "dphi_cl": lambda: dphi / cfg.local_scale,
               "deta_cl": lambda: deta / cfg.local_scale}
    return torch.stack([columns[name]() for name in cfg.names], dim=-1).to(torch.float32).reshape(len(x), -1)


def radius_z(x: torch.Tensor, cfg: FeatureConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(r, z) in mm of each hit, read back from its feature tensor x (..., F): the geometric
    attention bias (:mod:`trackstudy.models.geometry`) needs the positions, and the features hold
    them (``z`` and ``r``, or ``x`` and ``y``). ConfigError when the feature list has neither."""
    names = list(cfg.names)
    if "z" not in names or not ("r" in names or {"x", "y"} <= set(names)):
        raise ConfigError(f"the geometric attention bias (model.encoder.geo_bias) reads r and z from the features: "
                          f"model.features.names must hold 'z' and 'r' (or 'x' and 'y'), got {names}")
    z = x[..., names.index("z")].float() * cfg.z_scale
    if "r" in names:
        r = x[..., names.index("r")].float() * cfg.xy_scale
    else:
        r = torch.hypot(x[..., names.index("x")].float(), x[..., names.index("y")].float()) * cfg.xy_scale
    return r, z


def hit_features(hits: pd.DataFrame, cfg: FeatureConfig | None = None, *, source: str = "hits",
                 cluster=None) -> np.ndarray:
    """(N, F) float32 features of the rows of a hits DataFrame (columns x, y, z in mm);
    ``cluster`` (N,) locality labels for the cluster-relative features.

    Raises DataError naming the column when x, y or z is missing or not finite.
    """
    cfg = cfg or FeatureConfig()
    for col in ("x", "y", "z"):
        if col not in hits.columns:
            raise DataError(f"{source}: column {col!r} is missing (needed for the input features)")
        values = hits[col].to_numpy()
        if not np.issubdtype(values.dtype, np.number):
            raise DataError(f"{source}: column {col!r} is not numeric (dtype {values.dtype})")
        bad = ~np.isfinite(values.astype(np.float64))
        if bad.any():
            raise DataError(f"{source}: column {col!r} has a non-finite value at row {int(np.argmax(bad))}")
    return feature_array(hits["x"].to_numpy(), hits["y"].to_numpy(), hits["z"].to_numpy(), cfg, cluster)


__all__ = ["AVAILABLE_FEATURES", "CLUSTER_FEATURES", "DEFAULT_FEATURES", "FULL_DETECTOR_SCALES", "PIXEL_SCALES", "FeatureConfig",
           "feature_array", "feature_tensor", "hit_features", "radius_z"]
