"""Masked-token pretraining of the shared encoder (BERT-style), the CMS proposal's objective.

Tokens are hits (``tokens="hits"``: the features of :class:`FeatureConfig`) or doublets
(``tokens="doublets"``: the 20 :data:`~trackstudy.models.doublet.TOKEN_FEATURES` of the doublet-token
model, read as there: the encoder's input projection plus the token MLP ``token_mlp`` as token
embedding, so that both load into a :class:`~trackstudy.models.doublet.DoubletTransformer`; their
codes come from a :class:`~trackstudy.models.vqvae.DoubletTokenizer`). Of the real tokens of a batch a fraction
``rate`` (0.15) is selected; of those ``replace_mask`` (80%) get the learned mask embedding,
``replace_random`` (10%) the features of a random other token of the batch, the rest (10%) stay
as they are. The model predicts, for every selected token, what was hidden.

Hits are a set (no positional encoding), so a masked hit must keep *where* it is, or the task
would not say which hit to reconstruct: the ``visible`` features survive masking (default: those
of r, z, eta, theta and deta_cl in the feature list: the detector layer and the hit's position
along the beam), the others (x, y, sin phi, cos phi, phi, dphi_cl: the azimuth) are hidden. A
doublet keeps :data:`~trackstudy.models.doublet.DOUBLET_POSITION_FEATURES` (its hits' r, z, eta,
layer; dr, dz, deta, z0) and hides its azimuth (sin/cos phi of both hits, dphi) and curvature.
Replacing and masking act on the hidden features only, as BERT keeps a masked word's position.
The task is then: which track crosses this layer at this z (or radius) without a hit there, and
at which azimuth; a tracking question answered from the other hits of the event.

Targets (``target``): ``codes``: the token's VQ-VAE code (:mod:`trackstudy.models.vqvae`; a hit's or a doublet's) by
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
from trackstudy.models.doublet import DOUBLET_POSITION_FEATURES, TOKEN_FEATURES
from trackstudy.models.encoder import Encoder, EncoderConfig
from trackstudy.models.features import FeatureConfig
from trackstudy.models.gnn import mlp

__all__ = ["MASK_TARGETS", "POSITION_FEATURES", "TOKENS", "MaskConfig", "MaskedHitModel"]

#: Features that say where a hit sits along the beam / across the layers; visible by default.
POSITION_FEATURES = ("z", "r", "eta", "theta", "deta_cl")
MASK_TARGETS = ("codes", "features", "both")
#: What a token is: a hit or a doublet of the graph builder.
TOKENS = ("hits", "doublets")


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

    def visible_features(self, features, default: tuple[str, ...] = POSITION_FEATURES) -> tuple[str, ...]:
        """The features a masked token keeps (``features``: a FeatureConfig or the token feature
        names; ``default``: the visible ones when ``visible`` is empty); ConfigError names one that
        is not in the feature list."""
        names = tuple(getattr(features, "names", features))
        if not self.visible:
            vis = tuple(n for n in names if n in default)
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
                 mask_cfg: MaskConfig | None = None, n_codes: int = 0, *, tokens: str = "hits",
                 token_hidden: int = 64):
        super().__init__()
        self.feature_cfg = feature_cfg or FeatureConfig()
        self.mask_cfg = mask_cfg or MaskConfig()
        if tokens not in TOKENS:
            raise ConfigError(f"data.tokens: {tokens!r} unknown; choose from {', '.join(TOKENS)}")
        self.tokens = tokens
        self.token_names = tuple(self.feature_cfg.names) if tokens == "hits" else TOKEN_FEATURES
        if encoder_cfg.n_features != len(self.token_names):
            raise ConfigError(f"EncoderConfig.n_features={encoder_cfg.n_features} but the {tokens[:-1]} token features "
                              f"{list(self.token_names)} are {len(self.token_names)}")
        if self.mask_cfg.target in ("codes", "both") and n_codes < 1:
            raise ConfigError(f"mask.target {self.mask_cfg.target!r} predicts tokenizer codes: it needs a "
                              "tokenizer (n_codes >= 1)")
        self.encoder_cfg = encoder_cfg
        self.n_codes = int(n_codes) if self.mask_cfg.target != "features" else 0
        self.token_hidden = int(token_hidden) if tokens == "doublets" else 0
        # the doublet model's token MLP (same construction and name: its weights load into it)
        self.token_mlp = (mlp(len(self.token_names), self.token_hidden, encoder_cfg.d_model, 2)
                          if tokens == "doublets" else None)
        self.encoder = Encoder(encoder_cfg)
        self.mask_embedding = nn.Parameter(torch.randn(encoder_cfg.d_model) * 0.02)
        vis = self.mask_cfg.visible_features(self.token_names, POSITION_FEATURES if tokens == "hits"
                                             else DOUBLET_POSITION_FEATURES)
        self.register_buffer("hidden", torch.tensor([n not in vis for n in self.token_names]), persistent=False)
        self.feature_head = nn.Linear(encoder_cfg.d_model, len(self.token_names))
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
        if self.token_mlp is not None:
            extra = self.token_mlp(x) if extra is None else self.token_mlp(x) + extra
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
        names = [nm for nm, h in zip(self.token_names, self.hidden.tolist()) if h]
        sin, cos = ("sin_phi", "cos_phi") if self.tokens == "hits" else ("sin_phi_in", "cos_phi_in")
        if sin in names and cos in names:
            i, j = names.index(sin), names.index(cos)
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
                "mask": self.mask_cfg.to_dict(), "n_codes": self.n_codes, "tokens": self.tokens,
                "token_features": list(self.token_names), "token_hidden": self.token_hidden}

    @classmethod
    def from_config(cls, cfg: dict) -> MaskedHitModel:
        try:
            return cls(EncoderConfig.from_dict(cfg["encoder"]), FeatureConfig.from_dict(cfg["features"]),
                       MaskConfig.from_dict(cfg["mask"]), int(cfg["n_codes"]), tokens=cfg.get("tokens", "hits"),
                       token_hidden=int(cfg.get("token_hidden") or 64))
        except KeyError as exc:
            raise ConfigError(f"masked model config: missing entry {exc}") from None
