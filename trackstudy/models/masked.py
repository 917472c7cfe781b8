"""Masked-token pretraining of the shared encoder (BERT-style), the CMS proposal's objective.

Tokens are hits here (any per-token feature vector works: doublet tokens only need their own
features and, for the code target, a tokenizer of them). Of the real tokens of a batch a fraction
``rate`` (0.15) is selected; of those ``replace_mask`` (80%) get the learned mask embedding,
``replace_random`` (10%) the features of a random other token of the batch, the rest (10%) stay
as they are. The model predicts, for every selected token, what was hidden.

Hits are a set (no positional encoding), so a masked hit must keep *where* it is, or the task
would not say which hit to reconstruct: the ``visible`` features survive masking (default: those
of r, z, eta, theta and deta_cl in the feature list: the detector layer and the hit's position
along the beam), the others (x, y, sin phi, cos phi, phi, dphi_cl: the azimuth) are hidden.
Replacing and masking act on the hidden features only, as BERT keeps a masked word's position.
The task is then: which track crosses this layer at this z (or radius) without a hit there, and
at which azimuth; a tracking question answered from the other hits of the event.

Targets (``target``): ``codes``: the hit's VQ-VAE code (:mod:`trackstudy.models.vqvae`) by
cross-entropy, the prediction of a distribution over detector cells that copes with several
candidate tracks; ``features``: the hidden features by MSE; ``both`` (default): their weighted sum.

    model = MaskedHitModel(encoder_cfg, feature_cfg, MaskConfig(), n_codes=512)
    x_in, selected, mask_token = model.corrupt(x, pad_mask, generator)
    out = model(x_in, ctx, mask_token)                      # {"features": (B, T, F), "logits": (B, T, K)}
    loss, parts = model.loss(out, x, selected, codes)        # parts: mse, ce, code_accuracy, phi_error_rad
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from trackstudy.config import config_from_dict
from trackstudy.errors import ConfigError
from trackstudy.models.attention import AttentionContext
from trackstudy.models.encoder import Encoder, EncoderConfig
from trackstudy.models.features import FeatureConfig

__all__ = ["MASK_TARGETS", "POSITION_FEATURES", "MaskConfig", "MaskedHitModel"]

#: Features that say where a hit sits along the beam / across the layers; visible by default.
POSITION_FEATURES = ("z", "r", "eta", "theta", "deta_cl")
MASK_TARGETS = ("codes", "features", "both")


@dataclass
class MaskConfig:
    """Masking and target of the masked-token objective (see the module docstring)."""

    rate: float = 0.15
    replace_mask: float = 0.8
    replace_random: float = 0.1
    visible: tuple[str, ...] = field(default_factory=tuple)  # empty: the POSITION_FEATURES of the feature list
    target: str = "both"
    code_weight: float = 1.0
    feature_weight: float = 1.0

    def __post_init__(self):
        self.visible = tuple(self.visible)
        if not 0.0 < self.rate <= 1.0:
            raise ConfigError(f"mask.rate: must be in (0, 1], got {self.rate!r}")
        for name in ("replace_mask", "replace_random"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"mask.{name}: must be in [0, 1], got {getattr(self, name)!r}")
        if self.replace_mask + self.replace_random > 1.0 + 1e-9:
            raise ConfigError(f"mask.replace_mask + mask.replace_random must be <= 1, got "
                              f"{self.replace_mask} + {self.replace_random}")
        if self.target not in MASK_TARGETS:
            raise ConfigError(f"mask.target: {self.target!r} unknown; choose from {', '.join(MASK_TARGETS)}")
        if self.code_weight < 0 or self.feature_weight < 0:
            raise ConfigError("mask.code_weight and mask.feature_weight must be >= 0")

    def visible_features(self, feature_cfg: FeatureConfig) -> tuple[str, ...]:
        """The features a masked token keeps; ConfigError names one that is not in the feature list."""
        names = feature_cfg.names
        if not self.visible:
            vis = tuple(n for n in names if n in POSITION_FEATURES)
        else:
            missing = [n for n in self.visible if n not in names]
            if missing:
                raise ConfigError(f"mask.visible: {missing[0]!r} is not one of the model's features "
                                  f"({', '.join(names)})")
            vis = self.visible
        if len(vis) == len(names):
            raise ConfigError(f"mask.visible: every feature ({', '.join(names)}) is visible; nothing is left to predict")
        return vis

    def to_dict(self) -> dict:
        d = asdict(self)
        d["visible"] = list(self.visible)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MaskConfig:
        return config_from_dict(cls, d, "mask")


class MaskedHitModel(nn.Module):
    """The shared :class:`Encoder` with a learned mask embedding and the prediction heads of the
    masked-token objective; after pretraining, ``encoder``'s weights initialise a track model."""

    def __init__(self, encoder_cfg: EncoderConfig, feature_cfg: FeatureConfig | None = None,
                 mask_cfg: MaskConfig | None = None, n_codes: int = 0):
        super().__init__()
        self.feature_cfg = feature_cfg or FeatureConfig()
        self.mask_cfg = mask_cfg or MaskConfig()
        if encoder_cfg.n_features != self.feature_cfg.n_features:
            raise ConfigError(f"EncoderConfig.n_features={encoder_cfg.n_features} but the feature list "
                              f"{list(self.feature_cfg.names)} has {self.feature_cfg.n_features} features")
        if self.mask_cfg.target in ("codes", "both") and n_codes < 1:
            raise ConfigError(f"mask.target {self.mask_cfg.target!r} predicts tokenizer codes: it needs a "
                              "tokenizer (n_codes >= 1)")
        self.encoder_cfg = encoder_cfg
        self.n_codes = int(n_codes) if self.mask_cfg.target != "features" else 0
        self.encoder = Encoder(encoder_cfg)
        self.mask_embedding = nn.Parameter(torch.randn(encoder_cfg.d_model) * 0.02)
        vis = self.mask_cfg.visible_features(self.feature_cfg)
        self.register_buffer("hidden", torch.tensor([n not in vis for n in self.feature_cfg.names]),
                             persistent=False)
        self.feature_head = nn.Linear(encoder_cfg.d_model, self.feature_cfg.n_features)
        self.code_head = nn.Linear(encoder_cfg.d_model, self.n_codes) if self.n_codes else None

    def corrupt(self, x: torch.Tensor, pad_mask: torch.Tensor, generator: torch.Generator):
        """(corrupted features, selected (B, T) bool, mask_token (B, T) bool) of a batch x (B, T, F).
        Random numbers come from ``generator`` (on x's device) only: the same generator state gives
        the same corruption (a resumed run repeats it exactly)."""
        c = self.mask_cfg
        B, T, Fn = x.shape
        u = torch.rand(B, T, generator=generator, device=x.device)
        v = torch.rand(B, T, generator=generator, device=x.device)
        selected = (u < c.rate) & pad_mask
        mask_token = selected & (v < c.replace_mask)
        random_token = selected & (v >= c.replace_mask) & (v < c.replace_mask + c.replace_random)
        real = pad_mask.reshape(-1).nonzero()[:, 0]
        pick = real[torch.randint(len(real), (B * T,), generator=generator, device=x.device)]
        other = x.reshape(-1, Fn)[pick].reshape(B, T, Fn)
        hidden = self.hidden.to(x.device)
        x_in = torch.where((random_token[..., None] & hidden), other, x)
        x_in = torch.where((mask_token[..., None] & hidden), torch.zeros((), dtype=x.dtype, device=x.device), x_in)
        return x_in, selected, mask_token

    def forward(self, x: torch.Tensor, ctx: AttentionContext | None = None, mask_token: torch.Tensor | None = None,
                *, backend: str | None = None) -> dict:
        """Predictions for every token: hidden features (B, T, F) and code logits (B, T, K)."""
        if ctx is None:
            ctx = AttentionContext(batch_size=x.shape[0], seq_len=x.shape[1], device=x.device)
        extra = None
        if mask_token is not None:
            extra = mask_token[..., None].to(x.dtype) * self.mask_embedding  # (B, T, C)
        h = self.encoder(x, ctx, backend=backend, token_embedding=extra)
        out = {"features": self.feature_head(h)}
        if self.code_head is not None:
            out["logits"] = self.code_head(h)
        return out

    def loss(self, outputs: dict, x: torch.Tensor, selected: torch.Tensor,
             codes: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
        """The loss over the selected tokens and its parts (plain floats): ``mse`` of the hidden
        features, ``ce`` and ``code_accuracy`` (top-1) of the codes, ``phi_error_rad`` (mean |dphi|
        of the predicted azimuth, when sin/cos phi are hidden), ``n_selected``."""
        c = self.mask_cfg
        n = int(selected.sum())
        parts = {"n_selected": float(n)}
        zero = outputs["features"].sum() * 0.0
        if n == 0:
            return zero, {**parts, "loss": 0.0}
        pred = outputs["features"][selected][:, self.hidden]
        true = x[selected][:, self.hidden]
        loss = zero
        if c.target in ("features", "both"):
            mse = F.mse_loss(pred.float(), true.float())
            loss = loss + c.feature_weight * mse
            parts["mse"] = float(mse.detach())
        names = [nm for nm, h in zip(self.feature_cfg.names, self.hidden.tolist()) if h]
        if "sin_phi" in names and "cos_phi" in names:
            i, j = names.index("sin_phi"), names.index("cos_phi")
            dphi = torch.atan2(pred[:, i], pred[:, j]) - torch.atan2(true[:, i], true[:, j])
            dphi = torch.remainder(dphi + torch.pi, 2 * torch.pi) - torch.pi
            parts["phi_error_rad"] = float(dphi.abs().mean().detach())
        if self.code_head is not None:
            if codes is None:
                raise ConfigError("MaskedHitModel.loss: mask.target predicts codes; give the tokenizer's codes")
            logits = outputs["logits"][selected].float()
            target = codes[selected]
            ce = F.cross_entropy(logits, target)
            loss = loss + c.code_weight * ce
            parts["ce"] = float(ce.detach())
            parts["code_accuracy"] = float((logits.argmax(-1) == target).float().mean())
        parts["loss"] = float(loss.detach())
        return loss, parts

    def config_dict(self) -> dict:
        """Everything needed to rebuild the network, as plain containers (weights_only loading)."""
        return {"kind": "masked_hits", "encoder": self.encoder_cfg.to_dict(), "features": self.feature_cfg.to_dict(),
                "mask": self.mask_cfg.to_dict(), "n_codes": self.n_codes}

    @classmethod
    def from_config(cls, cfg: dict) -> MaskedHitModel:
        try:
            return cls(EncoderConfig.from_dict(cfg["encoder"]), FeatureConfig.from_dict(cfg["features"]),
                       MaskConfig.from_dict(cfg["mask"]), int(cfg["n_codes"]))
        except KeyError as exc:
            raise ConfigError(f"masked model config: missing entry {exc}") from None
