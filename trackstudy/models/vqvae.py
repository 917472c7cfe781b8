"""VQ-VAE tokenizers: every hit's (or doublet's) feature vector -> one of ``codebook_size`` discrete codes.

The seed slides ask whether VQ-VAE tokens (a discrete codebook in place of a VAE's continuous
latent, trained end to end) can serve tracking; this module gives a hit-level version
(:class:`HitTokenizer`, over the features of a :class:`FeatureConfig`) and a version over short
track segments (:class:`DoubletTokenizer`, over the 20 doublet token features of
:mod:`trackstudy.models.doublet`), both on the same :class:`Tokenizer` machinery. Their codes are
the target of masked-token pretraining (:mod:`trackstudy.models.masked`) and, for hits, the only
input of a code-input contrastive model (:mod:`trackstudy.models.heads`)::

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
dead codes, and the reconstruction error in detector units: for hits mm for x, y, z and r,
radians for phi; for doublets (:func:`doublet_reconstruction_errors`) mm for each hit's r, z and
3D position and the doublet's dr, dz, z0, radians for each hit's phi and the doublet's dphi,
units of pseudorapidity for eta and deta, pixel layers for the layer indices, 1/mm for the
curvature.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from trackstudy.errors import ConfigError, DataError
from trackstudy.graphs.doublets import EDGE_UNITS, NODE_UNITS
from trackstudy.models.doublet import TOKEN_FEATURES
from trackstudy.models.features import FeatureConfig

__all__ = ["TOKENIZERS", "DoubletTokenizer", "HitTokenizer", "Tokenizer", "VQConfig", "VectorQuantizer",
           "codebook_stats", "detector_units", "doublet_detector_units", "doublet_reconstruction_errors",
           "make_tokenizer", "reconstruction_errors", "tokenizer_from_config"]


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


class Tokenizer(nn.Module):
    """VQ-VAE over token feature vectors (N, F): ``encode`` -> codes (N,), ``decode`` codes -> features.
    The shared machinery of :class:`HitTokenizer` and :class:`DoubletTokenizer`, which differ in
    what a token's features are and in how they convert back to detector units."""

    #: What a token is ("hits" or "doublets": the ``data.tokens`` of pretraining).
    tokens = ""

    def __init__(self, config: VQConfig, feature_names: tuple[str, ...]):
        super().__init__()
        self.config = config
        self.feature_names = tuple(feature_names)
        if len(self.feature_names) != config.n_features:
            raise ConfigError(f"tokenizer: n_features={config.n_features} but the {self.tokens[:-1]} token features "
                              f"{list(self.feature_names)} are {len(self.feature_names)}")
        self.encoder = _mlp(config.n_features, config.hidden, config.code_dim)
        self.quantizer = VectorQuantizer(config)
        self.decoder = _mlp(config.code_dim, config.hidden, config.n_features)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.config.n_features:
            raise DataError(f"tokenizer: input must have shape (N, {self.config.n_features}), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> dict:
        """Reconstruction (N, F), codes (N,) and the loss parts of tokens x (N, F)."""
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
        """Codes (...,) of token features (..., F) (any leading shape)."""
        flat = x.reshape(-1, x.shape[-1])
        self._check(flat)
        return self.quantizer.nearest(self.encoder(flat)).reshape(x.shape[:-1])

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Features (..., F) of codes (...,): each code's decoded codebook vector."""
        return self.decoder(self.quantizer.codebook[codes])

    def reconstruction_errors(self, features, decoded) -> dict[str, float]:
        """Mean (and median) absolute errors of decoded vs true features in detector units."""
        raise NotImplementedError

    def config_dict(self) -> dict:
        raise NotImplementedError


class HitTokenizer(Tokenizer):
    """VQ-VAE over per-hit features (N, F) of a :class:`FeatureConfig`."""

    tokens = "hits"

    def __init__(self, config: VQConfig, feature_cfg: FeatureConfig | None = None):
        self.feature_cfg = feature_cfg or FeatureConfig()
        if self.feature_cfg.n_features != config.n_features:
            raise ConfigError(f"tokenizer: n_features={config.n_features} but the feature list "
                              f"{list(self.feature_cfg.names)} has {self.feature_cfg.n_features}")
        super().__init__(config, self.feature_cfg.names)

    def reconstruction_errors(self, features, decoded) -> dict[str, float]:
        """:func:`reconstruction_errors` (x, y, z, r in mm, phi in rad)."""
        return reconstruction_errors(features, decoded, self.feature_cfg)

    def config_dict(self) -> dict:
        return {"tokens": self.tokens, "vq": self.config.to_dict(), "features": self.feature_cfg.to_dict()}

    @classmethod
    def from_config(cls, cfg: dict) -> HitTokenizer:
        try:
            return cls(VQConfig.from_dict(cfg["vq"]), FeatureConfig.from_dict(cfg["features"]))
        except KeyError as exc:
            raise ConfigError(f"tokenizer config: missing entry {exc}") from None


class DoubletTokenizer(Tokenizer):
    """VQ-VAE over doublet tokens (E, 20): the :data:`~trackstudy.models.doublet.TOKEN_FEATURES` of the
    doublet-token model (its inner and outer hits' features and the doublet's features), so that a
    short track segment becomes one of ``codebook_size`` codes. Reconstruction errors:
    :func:`doublet_reconstruction_errors`."""

    tokens = "doublets"

    def __init__(self, config: VQConfig):
        super().__init__(config, TOKEN_FEATURES)

    def reconstruction_errors(self, features, decoded) -> dict[str, float]:
        """:func:`doublet_reconstruction_errors`."""
        return doublet_reconstruction_errors(features, decoded)

    def config_dict(self) -> dict:
        return {"tokens": self.tokens, "vq": self.config.to_dict()}

    @classmethod
    def from_config(cls, cfg: dict) -> DoubletTokenizer:
        try:
            return cls(VQConfig.from_dict(cfg["vq"]))
        except KeyError as exc:
            raise ConfigError(f"tokenizer config: missing entry {exc}") from None


TOKENIZERS = {"hits": HitTokenizer, "doublets": DoubletTokenizer}


def make_tokenizer(config: VQConfig, tokens: str = "hits", feature_cfg: FeatureConfig | None = None) -> Tokenizer:
    """A fresh tokenizer of ``tokens`` ("hits": over ``feature_cfg``'s features; "doublets": over the
    doublet token features, ``feature_cfg`` must be None)."""
    if tokens not in TOKENIZERS:
        raise ConfigError(f"tokenizer tokens: {tokens!r} unknown; choose from {', '.join(TOKENIZERS)}")
    if tokens == "hits":
        return HitTokenizer(config, feature_cfg)
    if feature_cfg is not None:
        raise ConfigError("tokenizer: doublet tokens have fixed features; give no feature list")
    return DoubletTokenizer(config)


def tokenizer_from_config(cfg: dict) -> Tokenizer:
    """Rebuild a tokenizer (fresh weights) from its ``config_dict`` (files without ``tokens``: hits)."""
    tokens = cfg.get("tokens", "hits") if isinstance(cfg, dict) else None
    if tokens not in TOKENIZERS:
        raise ConfigError(f"tokenizer config: tokens {tokens!r} unknown; choose from {', '.join(TOKENIZERS)}")
    return TOKENIZERS[tokens].from_config(cfg)


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


#: Detector units of the doublet quantities of :func:`doublet_detector_units`.
DOUBLET_UNITS = {"r": "mm", "z": "mm", "phi": "rad", "eta": "", "layer": "layers", "xyz": "mm", "dr": "mm",
                 "dphi": "rad", "dz": "mm", "deta": "", "z0": "mm", "curvature": "per_mm"}


def doublet_detector_units(features) -> dict[str, np.ndarray]:
    """Doublet quantities in detector units from doublet token features (E, 20)
    (:data:`~trackstudy.models.doublet.TOKEN_FEATURES`): for each hit (suffix ``_in``, ``_out``) r, z
    in mm, phi in rad (from sin/cos phi), eta, layer (pixel layer index) and x, y (mm); for the
    doublet dr, dz, z0 in mm, dphi in rad, deta, curvature in 1/mm. z0 and curvature are the
    clipped features' values (|z0| <= 2000 mm, |curvature| <= 0.01 / mm)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] != len(TOKEN_FEATURES):
        raise DataError(f"doublet features: expected shape (E, {len(TOKEN_FEATURES)}), got {f.shape}")
    n_node = len(NODE_UNITS)
    out = {}
    for side, base in (("in", 0), ("out", n_node)):
        col = {name: f[:, base + i] for i, name in enumerate(NODE_UNITS)}
        phi = np.arctan2(col["sin_phi"], col["cos_phi"])
        r = col["r"] * NODE_UNITS["r"]
        out.update({f"r_{side}": r, f"z_{side}": col["z"] * NODE_UNITS["z"], f"phi_{side}": phi,
                    f"eta_{side}": col["eta"] * NODE_UNITS["eta"], f"layer_{side}": col["layer"] * NODE_UNITS["layer"],
                    f"x_{side}": r * np.cos(phi), f"y_{side}": r * np.sin(phi)})
    for i, name in enumerate(EDGE_UNITS):
        if name in ("layer_in", "layer_out"):  # the same layers as the hits' (kept once)
            continue
        out[name] = f[:, 2 * n_node + i] * EDGE_UNITS[name]
    return out


def doublet_reconstruction_errors(features, decoded) -> dict[str, float]:
    """Mean absolute error of decoded vs true doublet tokens (E, 20) in detector units, named
    ``<quantity>_<unit>``: ``r_in_mm``, ``z_in_mm``, ``phi_in_rad``, ``eta_in``, ``layer_in_layers``
    (and ``_out``), ``xyz_in_mm`` / ``xyz_out_mm`` (3D distance of each hit), ``dr_mm``, ``dphi_rad``,
    ``dz_mm``, ``deta``, ``z0_mm``, ``curvature_per_mm``; phi and dphi errors wrapped to [-pi, pi];
    plus the median of each as ``*_median``."""
    a, b = doublet_detector_units(features), doublet_detector_units(decoded)
    out = {}

    def put(name, unit, err):
        key = f"{name}_{unit}" if unit else name
        out[key] = float(np.mean(err))
        out[f"{key}_median"] = float(np.median(err))

    for name in a:
        if name.startswith(("x_", "y_")):
            continue
        diff = b[name] - a[name]
        if name.startswith("phi") or name == "dphi":
            diff = np.mod(diff + np.pi, 2 * np.pi) - np.pi
        put(name, DOUBLET_UNITS[name.rsplit("_", 1)[0] if name.endswith(("_in", "_out")) else name], np.abs(diff))
    for side in ("in", "out"):
        dist = np.sqrt(sum((b[f"{k}_{side}"] - a[f"{k}_{side}"]) ** 2 for k in ("x", "y", "z")))
        put(f"xyz_{side}", "mm", dist)
    return out
