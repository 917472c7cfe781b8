"""A VQ-VAE tokenizer of hits: every hit's feature vector -> one of ``codebook_size`` discrete codes.

The seed slides ask whether VQ-VAE tokens (a discrete codebook in place of a VAE's continuous
latent, trained end to end) can serve tracking; this module gives the hit-level version, whose
codes are also the target of the masked-hit pretraining (:mod:`trackstudy.models.masked`)::

    features (N, F) -> encoder MLP -> z (N, D) -> nearest codebook entry e_k -> decoder MLP -> features (N, F)

Loss: ``MSE(decoded, features) + commitment * |z - sg(e_k)|^2`` with the straight-through
gradient ``z + sg(e_k - z)`` into the encoder (van den Oord et al.'s VQ-VAE; commitment 0.25).
The codebook is not learned by gradient but by exponential moving averages of the vectors
assigned to each code (``ema_decay``, Laplace-smoothed counts). Against codebook collapse, two
countermeasures: k-means initialisation of the codebook on the encoder outputs of the first
batch (``kmeans_init``), and dead-code restarts: a code unused for ``dead_after`` consecutive
steps is moved onto a randomly chosen encoder output of the current batch.

Measures (:func:`codebook_stats`, :func:`reconstruction_errors`): codebook usage (fraction of
codes used), perplexity (exp of the code entropy; ``codebook_size`` when all are equally used),
dead codes, and the reconstruction error in detector units: mm for x, y, z and r, radians for phi.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from trackstudy.errors import ConfigError, DataError
from trackstudy.models.features import FeatureConfig

__all__ = ["HitTokenizer", "VQConfig", "VectorQuantizer", "codebook_stats", "detector_units",
           "reconstruction_errors"]


@dataclass
class VQConfig:
    """Sizes and codebook settings of a :class:`HitTokenizer`."""

    n_features: int = 7
    codebook_size: int = 512
    code_dim: int = 16
    hidden: int = 64  # width of the encoder and decoder MLPs (two hidden layers each)
    commitment: float = 0.25
    ema_decay: float = 0.99
    dead_after: int = 20  # steps without use before a code is restarted (0 = never)
    kmeans_init: bool = True
    kmeans_iters: int = 10

    def __post_init__(self):
        for name in ("n_features", "codebook_size", "code_dim", "hidden", "kmeans_iters"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"tokenizer.{name}: must be a positive integer, got {value!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"tokenizer.ema_decay: must be in [0, 1), got {self.ema_decay!r}")
        if self.commitment < 0:
            raise ConfigError(f"tokenizer.commitment: must be >= 0, got {self.commitment!r}")
        if self.dead_after < 0:
            raise ConfigError(f"tokenizer.dead_after: must be >= 0, got {self.dead_after!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> VQConfig:
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ConfigError(f"VQConfig: unknown field {unknown[0]!r}")
        return cls(**d)


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook with EMA updates, k-means initialisation and dead-code restarts.
    The codebook and its statistics are buffers (saved in the state dict, never in the optimiser)."""

    def __init__(self, config: VQConfig):
        super().__init__()
        self.config = config
        K, D = config.codebook_size, config.code_dim
        self.register_buffer("codebook", torch.randn(K, D) * 0.1)
        self.register_buffer("ema_count", torch.ones(K))
        self.register_buffer("ema_sum", self.codebook.clone())
        self.register_buffer("unused_steps", torch.zeros(K, dtype=torch.long))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(N,) int64 index of the nearest code of each row of z (N, D)."""
        d = (z.pow(2).sum(-1, keepdim=True) - 2 * z @ self.codebook.T + self.codebook.pow(2).sum(-1))  # (N, K)
        return d.argmin(-1)

    @torch.no_grad()
    def kmeans_init(self, z: torch.Tensor, generator: torch.Generator) -> None:
        """Codebook := k-means centroids of z (N, D) (random rows as the start; empty clusters keep theirs)."""
        K = self.config.codebook_size
        idx = torch.randint(len(z), (K,), generator=generator) if len(z) < K else \
            torch.randperm(len(z), generator=generator)[:K]
        centroids = z[idx].clone()
        for _ in range(self.config.kmeans_iters):
            self.codebook.copy_(centroids)
            codes = self.nearest(z)
            counts = torch.bincount(codes, minlength=K).to(z.dtype)
            sums = torch.zeros_like(centroids).index_add_(0, codes, z)
            filled = counts > 0
            centroids[filled] = sums[filled] / counts[filled, None]
        self.codebook.copy_(centroids)
        self.ema_sum.copy_(centroids)
        self.ema_count.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, codes: torch.Tensor, generator: torch.Generator | None) -> None:
        c = self.config
        K = c.codebook_size
        counts = torch.bincount(codes, minlength=K).to(z.dtype)
        sums = torch.zeros(K, z.shape[1], dtype=z.dtype, device=z.device).index_add_(0, codes, z)
        self.ema_count.mul_(c.ema_decay).add_(counts, alpha=1 - c.ema_decay)
        self.ema_sum.mul_(c.ema_decay).add_(sums, alpha=1 - c.ema_decay)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (n + K * 1e-5) * n  # Laplace smoothing: no division by 0
        self.codebook.copy_(self.ema_sum / smoothed[:, None])
        self.unused_steps.add_(1).masked_fill_(counts > 0, 0)
        if c.dead_after:
            dead = (self.unused_steps >= c.dead_after).nonzero()[:, 0]
            if len(dead):
                pick = torch.randint(len(z), (len(dead),), generator=generator)
                self.codebook[dead] = z[pick]
                self.ema_sum[dead] = z[pick]
                self.ema_count[dead] = 1.0
                self.unused_steps[dead] = 0

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None):
        """(quantised z with the straight-through gradient, codes (N,), commitment loss)."""
        codes = self.nearest(z.detach())
        q = self.codebook[codes]
        commit = F.mse_loss(z, q.detach())
        if self.training and self.config.ema_decay > 0:
            self._ema_update(z.detach(), codes, generator)
        return z + (q - z).detach(), codes, commit


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, n_out))


class HitTokenizer(nn.Module):
    """VQ-VAE over per-hit features (N, F): ``encode`` -> codes (N,), ``decode`` codes -> features."""

    def __init__(self, config: VQConfig, feature_cfg: FeatureConfig | None = None):
        super().__init__()
        self.config = config
        self.feature_cfg = feature_cfg or FeatureConfig()
        if self.feature_cfg.n_features != config.n_features:
            raise ConfigError(f"tokenizer: n_features={config.n_features} but the feature list "
                              f"{list(self.feature_cfg.names)} has {self.feature_cfg.n_features}")
        self.encoder = _mlp(config.n_features, config.hidden, config.code_dim)
        self.quantizer = VectorQuantizer(config)
        self.decoder = _mlp(config.code_dim, config.hidden, config.n_features)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.config.n_features:
            raise DataError(f"tokenizer: input must have shape (N, {self.config.n_features}), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """Reconstruction (N, F), codes (N,) and the loss parts of hits x (N, F)."""
        self._check(x)
        z = self.encoder(x)
        if self.training and self.config.kmeans_init and not bool(self.quantizer.initialised):
            self.quantizer.kmeans_init(z.detach(), generator or torch.Generator().manual_seed(0))
        zq, codes, commit = self.quantizer(z, generator)
        recon = self.decoder(zq)
        mse = F.mse_loss(recon, x)
        loss = mse + self.config.commitment * commit
        return {"recon": recon, "codes": codes, "loss": loss, "mse": float(mse.detach()),
                "commitment": float(commit.detach())}

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Codes (...,) of hit features (..., F) (any leading shape)."""
        flat = x.reshape(-1, x.shape[-1])
        self._check(flat)
        return self.quantizer.nearest(self.encoder(flat)).reshape(x.shape[:-1])

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Features (..., F) of codes (...,): each code's decoded codebook vector."""
        return self.decoder(self.quantizer.codebook[codes])

    def config_dict(self) -> dict:
        return {"vq": self.config.to_dict(), "features": self.feature_cfg.to_dict()}

    @classmethod
    def from_config(cls, cfg: dict) -> HitTokenizer:
        try:
            return cls(VQConfig.from_dict(cfg["vq"]), FeatureConfig.from_dict(cfg["features"]))
        except KeyError as exc:
            raise ConfigError(f"tokenizer config: missing entry {exc}") from None


def codebook_stats(codes, codebook_size: int) -> dict:
    """Usage of a codebook by ``codes`` (any int array): ``used`` codes, ``usage`` (fraction used),
    ``dead`` (unused codes), ``perplexity`` (exp of the entropy of the code frequencies)."""
    c = np.asarray(codes).reshape(-1)
    if c.size == 0:
        raise DataError("codebook_stats: no codes")
    counts = np.bincount(c, minlength=codebook_size)
    p = counts[counts > 0] / c.size
    used = int((counts > 0).sum())
    return {"codebook_size": int(codebook_size), "used": used, "usage": used / codebook_size,
            "dead": int(codebook_size - used), "perplexity": float(math.exp(-(p * np.log(p)).sum())),
            "n_hits": int(c.size)}


def detector_units(features, feature_cfg: FeatureConfig) -> dict[str, np.ndarray]:
    """Hit coordinates in detector units from (normalised) features (N, F): x, y, z, r in mm and
    phi in rad, each where the feature list holds what it needs (phi from sin/cos phi, else from
    phi, else from x and y; r from r, else from x and y)."""
    f = np.asarray(features, dtype=np.float64)
    col = {n: f[:, i] for i, n in enumerate(feature_cfg.names)}
    out = {}
    for name, scale in (("x", feature_cfg.xy_scale), ("y", feature_cfg.xy_scale), ("z", feature_cfg.z_scale)):
        if name in col:
            out[name] = col[name] * scale
    if "r" in col:
        out["r"] = col["r"] * feature_cfg.xy_scale
    elif "x" in out and "y" in out:
        out["r"] = np.hypot(out["x"], out["y"])
    if "sin_phi" in col and "cos_phi" in col:
        out["phi"] = np.arctan2(col["sin_phi"], col["cos_phi"])
    elif "phi" in col:
        out["phi"] = col["phi"] * np.pi
    elif "x" in out and "y" in out:
        out["phi"] = np.arctan2(out["y"], out["x"])
    return out


def reconstruction_errors(features, decoded, feature_cfg: FeatureConfig) -> dict[str, float]:
    """Mean absolute error of decoded vs true hit coordinates in detector units (``x_mm``, ``y_mm``,
    ``z_mm``, ``r_mm``, ``phi_rad`` with phi wrapped to [-pi, pi]) and the mean 3D distance
    ``xyz_mm`` when x, y and z are all features; plus the median of each as ``*_median``."""
    a, b = detector_units(features, feature_cfg), detector_units(decoded, feature_cfg)
    out = {}
    for name, d in a.items():
        diff = b[name] - d
        if name == "phi":
            diff = np.mod(diff + np.pi, 2 * np.pi) - np.pi
        unit = "rad" if name == "phi" else "mm"
        out[f"{name}_{unit}"] = float(np.mean(np.abs(diff)))
        out[f"{name}_{unit}_median"] = float(np.median(np.abs(diff)))
    if all(k in a for k in ("x", "y", "z")):
        dist = np.sqrt(sum((b[k] - a[k]) ** 2 for k in ("x", "y", "z")))
        out["xyz_mm"] = float(dist.mean())
        out["xyz_mm_median"] = float(np.median(dist))
    return out
