"""Track-finding models on the shared :class:`~trackstudy.models.encoder.Encoder`.

Four families, one interface (used by the trainer, predict and the notebooks)::

    model = build_model(family, encoder_cfg, **head_kwargs)    # family in FAMILIES
    out = model(x, ctx)                  # dict of (B, T, ...) tensors, zero at padding
    loss, parts = model.loss(out, batch) # parts: plain floats for logging
    ev = model.event_outputs(out, b, pad_mask)   # event b's outputs, padding removed (track formation)
    cfg = model.config_dict()            # plain containers; model_from_config(cfg) rebuilds it

==============  =====================================================  ==========================
family          outputs                                                loss
==============  =====================================================  ==========================
enc_cla         logits (B, T, C) over road classes (+1 noise class)    masked cross-entropy
enc_reg         params (B, T, 4) = theta, sin phi, cos phi, q;         masked MSE on params
                latent (B, T, n_latent) free latent variables
jm (JM X:Y)     params, latent (stage 1, X layers) and logits          alpha * MSE + beta * CE
                (stage 2, Y layers, input = x ++ params ++ latent)     (alpha = 1, beta = 0.3)
contrastive     embedding (B, T, embed_dim = 32)                       multi-positive InfoNCE
==============  =====================================================  ==========================

Batch keys read by ``loss`` (see :func:`trackstudy.training.targets.collate`): ``pad_mask``,
``cls_target`` (enc_cla, jm), ``reg_target`` and ``reg_mask`` (enc_reg, jm), ``particle_id``,
``pt`` and optionally ``cluster`` (contrastive; without it each event is one neighbourhood).
Padding never changes a real hit's outputs: the encoder masks it and the heads act per hit.

Code input (contrastive only; ``build_model(..., tokenizer=...)``, a run config's ``model.input:
codes`` with ``model.tokenizer``): a hit's only input is its code of a trained VQ-VAE
:class:`~trackstudy.models.vqvae.HitTokenizer`. The model still takes the hits' features x
(B, T, F) of the tokenizer's feature list (so data, training and inference read hits as always),
turns them into codes with the frozen tokenizer, which travels in the model's state dict, and
feeds the encoder a learned embedding of each code (``code_embedding``, width d_model; the
encoder's ``n_features`` is then d_model) and nothing else: no gradient and no value of x reach
the encoder except through the code.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn as nn

from trackstudy.errors import ConfigError
from trackstudy.models.attention import AttentionContext
from trackstudy.models.doublet import doublet_from_config
from trackstudy.models.encoder import Encoder, EncoderConfig
from trackstudy.models.features import FeatureConfig, radius_z
from trackstudy.models.geometry import geometry_from_features
from trackstudy.models.gnn import gnn_from_config
from trackstudy.models.losses import contrastive_loss, joint_loss, masked_bce, masked_cross_entropy, masked_mse
from trackstudy.models.roads import REG_TARGETS, RoadBinning
from trackstudy.models.vqvae import HitTokenizer, Tokenizer, tokenizer_from_config

#: Families of hit-token models (the encoder + a head, built by build_model).
TOKEN_FAMILIES = ("enc_cla", "enc_reg", "jm", "contrastive")
#: Families of edge models, which score the doublets of a graph (trackstudy.training.gnn trains them, the
#: GNN's track building turns their scores into tracks): "gnn" is the interaction network
#: (trackstudy.models.gnn), "doublet" the encoder over doublet tokens (trackstudy.models.doublet).
EDGE_FAMILIES = ("gnn", "doublet")
#: Every model family.
FAMILIES = (*TOKEN_FAMILIES, *EDGE_FAMILIES)
#: What a hit-token model reads per hit: its features, or only its VQ-VAE code (contrastive family).
INPUTS = ("features", "codes")
#: The families that can read codes.
CODE_FAMILIES = ("contrastive",)
#: Families whose hit features give the encoder the hits' geometry (model.encoder.geo_bias).
GEOMETRY_FAMILIES = TOKEN_FAMILIES


@dataclass
class HeadConfig:
    """Head hyper-parameters of every family (fields a family does not use are ignored).

    n_classes: road classes of EncCla/JM (from the RoadBinning), noise: "class" (an extra output
    for noise hits) or "ignore" (noise excluded from the cross-entropy); n_latent: free latents of
    EncReg/JM; cla_layers: Y of JM X:Y (X is the encoder config's n_layers); alpha, beta: JM loss
    weights; embed_dim, temperature, pt_min: contrastive; filter_weight > 0 adds to the contrastive
    model a hit filter (a logit per hit: does the hit belong to a particle with pT > filter_pt GeV?),
    trained with binary cross-entropy weighted by filter_weight, which track formation uses to
    leave the hits of low-pT particles and noise out of track candidates (hepattn's hit filter).
    """

    family: str = "contrastive"
    n_classes: int = 0
    noise: str = "class"
    n_latent: int = 4
    cla_layers: int = 6
    alpha: float = 1.0
    beta: float = 0.3
    embed_dim: int = 32
    temperature: float = 0.05
    pt_min: float = 0.9
    filter_weight: float = 0.0
    filter_pt: float = 0.9

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ConfigError(f"model family {self.family!r} unknown; choose from {', '.join(FAMILIES)}")
        if self.noise not in ("class", "ignore"):
            raise ConfigError(f"HeadConfig.noise must be 'class' or 'ignore', got {self.noise!r}")
        if self.family in ("enc_cla", "jm") and self.n_classes < 1:
            raise ConfigError(f"{self.family}: n_classes must be >= 1 (give a fitted RoadBinning or n_classes)")
        for name in ("n_latent",):
            if getattr(self, name) < 0:
                raise ConfigError(f"HeadConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("cla_layers", "embed_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"HeadConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ConfigError(f"HeadConfig.temperature must be > 0, got {self.temperature}")
        if self.filter_weight < 0 or self.filter_pt < 0:
            raise ConfigError(f"HeadConfig: filter_weight and filter_pt must be >= 0, got {self.filter_weight}, "
                              f"{self.filter_pt}")
        if self.alpha < 0 or self.beta < 0:
            raise ConfigError(f"HeadConfig: alpha and beta must be >= 0, got {self.alpha}, {self.beta}")

    @property
    def n_outputs(self) -> int:
        """Width of the classifier: road classes plus the noise class when noise='class'."""
        return self.n_classes + (1 if self.noise == "class" else 0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HeadConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"HeadConfig: unknown field {unknown[0]!r}")
        return cls(**d)


def make_context(batch: dict, **kwargs) -> AttentionContext:
    """The encoder's AttentionContext of a collated batch (pad_mask, cluster, eta, phi when present)."""
    return AttentionContext(batch["pad_mask"], batch.get("cluster"), batch.get("eta"), batch.get("phi"), **kwargs)


def _zero_padding(t: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
    return torch.where(pad_mask[..., None], t, torch.zeros((), dtype=t.dtype, device=t.device))


class TrackModel(nn.Module):
    """Base class: an encoder, a head and the loss of one family.

    ``track_params``: the track-formation parameters tuned for this model (a dataclass of
    :mod:`trackstudy.postprocessing.track_formation`, set by the trainer and by ``load_run``, which
    store it with the run); None: the family's defaults. The model only carries it.
    """

    family: str = ""

    def __init__(self, encoder_cfg: EncoderConfig, head_cfg: HeadConfig, feature_cfg: FeatureConfig | None = None,
                 binning: RoadBinning | None = None, track_params=None, tokenizer: Tokenizer | None = None):
        super().__init__()
        if head_cfg.family != self.family:
            raise ConfigError(f"{type(self).__name__} needs a HeadConfig with family {self.family!r}, "
                              f"got {head_cfg.family!r}")
        self.tokenizer = None
        self.code_embedding = None
        if tokenizer is not None:
            self._set_tokenizer(tokenizer, encoder_cfg, feature_cfg)
        else:
            self.feature_cfg = feature_cfg or FeatureConfig()
            if encoder_cfg.n_features != self.feature_cfg.n_features:
                raise ConfigError(f"EncoderConfig.n_features={encoder_cfg.n_features} but the feature list "
                                  f"{list(self.feature_cfg.names)} has {self.feature_cfg.n_features} features")
        if binning is not None and head_cfg.family in ("enc_cla", "jm") and binning.n_classes != head_cfg.n_classes:
            raise ConfigError(f"road binning has {binning.n_classes} classes, "
                              f"HeadConfig.n_classes={head_cfg.n_classes}")
        self.encoder_cfg = encoder_cfg
        self.head_cfg = head_cfg
        self.binning = binning
        self.encoder = Encoder(encoder_cfg)
        self.track_params = track_params
        if encoder_cfg.geo_bias:
            if self.family not in GEOMETRY_FAMILIES:
                raise ConfigError(f"model.encoder.geo_bias: an option of the hit-token families "
                                  f"({', '.join(GEOMETRY_FAMILIES)}), not of {self.family!r}")
            radius_z(torch.zeros(1, self.feature_cfg.n_features), self.feature_cfg)  # ConfigError without r, z

    def _set_tokenizer(self, tokenizer: Tokenizer, encoder_cfg: EncoderConfig, feature_cfg: FeatureConfig | None):
        """Code input: the frozen ``tokenizer`` (its hit features become the model's) and an embedding
        of its codes as the encoder's only input."""
        if self.family not in CODE_FAMILIES:
            raise ConfigError(f"model.input: 'codes' is an option of the {', '.join(CODE_FAMILIES)} family, not "
                              f"of {self.family!r}")
        if not isinstance(tokenizer, HitTokenizer):
            raise ConfigError(f"model.tokenizer: a hit-token model reads the codes of a hit tokenizer, this one is a "
                              f"tokenizer of {getattr(tokenizer, 'tokens', '?')} (pretrained with data.tokens: hits)")
        if feature_cfg is not None and feature_cfg != tokenizer.feature_cfg:
            raise ConfigError(f"model.features: the features of a code-input model are its tokenizer's "
                              f"({list(tokenizer.feature_cfg.names)}); got {list(feature_cfg.names)}")
        if encoder_cfg.n_features != encoder_cfg.d_model:
            raise ConfigError(f"model.input: 'codes': the encoder reads code embeddings of width d_model="
                              f"{encoder_cfg.d_model}, so EncoderConfig.n_features must be {encoder_cfg.d_model}, "
                              f"got {encoder_cfg.n_features}")
        self.feature_cfg = tokenizer.feature_cfg
        self.tokenizer = tokenizer.eval()
        for p in self.tokenizer.parameters():
            p.requires_grad_(False)
        self.code_embedding = nn.Embedding(tokenizer.config.codebook_size, encoder_cfg.d_model)  # N(0, 1) init

    @property
    def input(self) -> str:
        """What the model reads per hit: "features" or "codes" (see :data:`INPUTS`)."""
        return "features" if self.tokenizer is None else "codes"

    def train(self, mode: bool = True):
        super().train(mode)
        if self.tokenizer is not None:
            self.tokenizer.eval()  # frozen
        return self

    def inputs(self, x: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """The encoder's input (B, T, ·) of hit features x (B, T, F): x itself, or (code input) the
        embedding (B, T, d_model) of each hit's code, computed without gradient from x."""
        if self.tokenizer is None:
            return x
        real = torch.where(ctx.pad_mask[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
        return self.code_embedding(self.codes(real))

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) int64 tokenizer code of each hit of x (B, T, F) (code-input models only)."""
        if self.tokenizer is None:
            raise ConfigError(f"{type(self).__name__}.codes: the model reads features, it has no tokenizer")
        with torch.autocast(device_type=x.device.type, enabled=False):  # the codes of float32, as in inference
            return self.tokenizer.encode(x.float())

    # -- interface ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, ctx: AttentionContext | None = None, *, backend: str | None = None) -> dict:
        raise NotImplementedError

    def loss(self, outputs: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def encoders(self) -> list[tuple[str, Encoder]]:
        """(name, encoder) of each transformer stage, in order (for attention inspection)."""
        return [("encoder", self.encoder)]

    def _encode(self, name: str, encoder: Encoder, x, ctx, backend):
        """Run one encoder stage; while :meth:`capture_attention` is active, through the explicit
        backend, keeping its per-layer weights (B, H, T, T) under ``name``."""
        capture = getattr(self, "_attention_capture", None)
        if capture is None:
            return encoder(x, ctx, backend=backend)
        h, maps = encoder(x, ctx, backend="explicit", return_attention=True)
        capture[name] = [m.detach() for m in maps]
        return h

    @contextlib.contextmanager
    def capture_attention(self):
        """``with model.capture_attention() as maps: model(x, ctx)`` fills ``maps`` with
        {stage name: [per-layer attention weights (B, H, T, T)]} (explicit backend, same function)."""
        maps: dict = {}
        self._attention_capture = maps
        try:
            yield maps
        finally:
            self._attention_capture = None

    def _ctx(self, x, ctx):
        """The context of hit features x (a new one when None), with the hits' geometry attached
        when the encoder has the geometric attention bias."""
        ctx = ctx if ctx is not None else AttentionContext(batch_size=x.shape[0], seq_len=x.shape[1], device=x.device)
        if self.encoder_cfg.geo_bias and ctx.geometry is None:
            r, z = radius_z(x, self.feature_cfg)
            ctx.set_geometry(geometry_from_features(r, z, ctx.pad_mask, ctx.cluster_labels))
        return ctx

    # -- serialisation -----------------------------------------------------------------------------
    def config_dict(self) -> dict:
        """Everything needed to rebuild the network (not the weights, not the track parameters, which
    the run stores beside it: :func:`trackstudy.training.checkpoint.model_config`), as plain containers."""
        return {"family": self.family, "encoder": self.encoder_cfg.to_dict(), "head": self.head_cfg.to_dict(),
                "features": self.feature_cfg.to_dict(),
                "binning": self.binning.to_state() if self.binning is not None else None, "input": self.input,
                "tokenizer": self.tokenizer.config_dict() if self.tokenizer is not None else None}

    # -- outputs of one event --------------------------------------------------------------------
    def event_outputs(self, outputs: dict, index: int = 0, pad_mask: torch.Tensor | None = None) -> dict:
        """The outputs of event ``index`` of a batch, padding removed, as detached tensors (N, ...)."""
        out = {}
        for k, v in outputs.items():
            v = v[index]
            if pad_mask is not None:
                v = v[pad_mask[index]]
            out[k] = v.detach()
        return out


class EncCla(TrackModel):
    """Encoder + linear classifier over quantile-binned (phi, theta, p, q) road classes."""

    family = "enc_cla"

    def __init__(self, encoder_cfg, head_cfg, feature_cfg=None, binning=None, track_params=None):
        super().__init__(encoder_cfg, head_cfg, feature_cfg, binning, track_params)
        self.classifier = nn.Linear(encoder_cfg.d_model, head_cfg.n_outputs)

    def forward(self, x, ctx=None, *, backend=None):
        ctx = self._ctx(x, ctx)
        h = self._encode("encoder", self.encoder, x, ctx, backend)  # (B, T, C)
        return {"logits": _zero_padding(self.classifier(h), ctx.pad_mask)}  # (B, T, n_outputs)

    def loss(self, outputs, batch):
        ce = masked_cross_entropy(outputs["logits"], batch["cls_target"], batch["pad_mask"])
        return ce, {"loss": float(ce.detach()), "ce": float(ce.detach())}


class EncReg(TrackModel):
    """Encoder + linear regression of (theta, sin phi, cos phi, q) and free latent variables."""

    family = "enc_reg"

    def __init__(self, encoder_cfg, head_cfg, feature_cfg=None, binning=None, track_params=None):
        super().__init__(encoder_cfg, head_cfg, feature_cfg, binning, track_params)
        self.regressor = nn.Linear(encoder_cfg.d_model, len(REG_TARGETS) + head_cfg.n_latent)

    def forward(self, x, ctx=None, *, backend=None):
        ctx = self._ctx(x, ctx)
        h = self._encode("encoder", self.encoder, x, ctx, backend)
        y = _zero_padding(self.regressor(h), ctx.pad_mask)  # (B, T, 4 + n_latent)
        return {"params": y[..., : len(REG_TARGETS)], "latent": y[..., len(REG_TARGETS):]}

    def loss(self, outputs, batch):
        mse = masked_mse(outputs["params"], batch["reg_target"], batch["reg_mask"] & batch["pad_mask"])
        return mse, {"loss": float(mse.detach()), "mse": float(mse.detach())}


class JointModel(TrackModel):
    """JM X:Y: an EncReg stage (X layers) whose parameters and latents, concatenated with the input
    features, feed an EncCla stage (Y = ``head_cfg.cla_layers`` layers); trained end to end."""

    family = "jm"

    def __init__(self, encoder_cfg, head_cfg, feature_cfg=None, binning=None, track_params=None):
        super().__init__(encoder_cfg, head_cfg, feature_cfg, binning, track_params)
        n_reg = len(REG_TARGETS) + head_cfg.n_latent
        self.regressor = nn.Linear(encoder_cfg.d_model, n_reg)
        self.cla_cfg = replace(encoder_cfg, n_layers=head_cfg.cla_layers, n_features=encoder_cfg.n_features + n_reg)
        self.cla_encoder = Encoder(self.cla_cfg)
        self.classifier = nn.Linear(encoder_cfg.d_model, head_cfg.n_outputs)

    def encoders(self):
        return [("regressor", self.encoder), ("classifier", self.cla_encoder)]

    def forward(self, x, ctx=None, *, backend=None):
        ctx = self._ctx(x, ctx)
        h = self._encode("regressor", self.encoder, x, ctx, backend)
        y = _zero_padding(self.regressor(h), ctx.pad_mask)  # (B, T, 4 + L)
        h = self._encode("classifier", self.cla_encoder, torch.cat([x, y], dim=-1), ctx, backend)
        return {"params": y[..., : len(REG_TARGETS)], "latent": y[..., len(REG_TARGETS):],
                "logits": _zero_padding(self.classifier(h), ctx.pad_mask)}

    def loss(self, outputs, batch):
        mse = masked_mse(outputs["params"], batch["reg_target"], batch["reg_mask"] & batch["pad_mask"])
        ce = masked_cross_entropy(outputs["logits"], batch["cls_target"], batch["pad_mask"])
        total = joint_loss(mse, ce, self.head_cfg.alpha, self.head_cfg.beta)
        return total, {"loss": float(total.detach()), "mse": float(mse.detach()), "ce": float(ce.detach())}


class ContrastiveModel(TrackModel):
    """Encoder + linear projection to an ``embed_dim`` embedding per hit (contrastive loss), and
    optionally (``head_cfg.filter_weight > 0``) a hit-filter logit per hit."""

    family = "contrastive"

    def __init__(self, encoder_cfg, head_cfg, feature_cfg=None, binning=None, track_params=None, tokenizer=None):
        super().__init__(encoder_cfg, head_cfg, feature_cfg, binning, track_params, tokenizer)
        self.projection = nn.Linear(encoder_cfg.d_model, head_cfg.embed_dim)
        self.hit_filter = nn.Linear(encoder_cfg.d_model, 1) if head_cfg.filter_weight > 0 else None

    def forward(self, x, ctx=None, *, backend=None):
        ctx = self._ctx(x, ctx)
        h = self._encode("encoder", self.encoder, self.inputs(x, ctx), ctx, backend)
        out = {"embedding": _zero_padding(self.projection(h), ctx.pad_mask)}  # (B, T, embed_dim)
        if self.hit_filter is not None:
            out["filter"] = _zero_padding(self.hit_filter(h), ctx.pad_mask)[..., 0]  # (B, T) logits
        return out

    def loss(self, outputs, batch):
        loss, parts = contrastive_loss(outputs["embedding"], batch["particle_id"], batch["pt"], batch["pad_mask"],
                                       batch.get("cluster"), temperature=self.head_cfg.temperature,
                                       pt_min=self.head_cfg.pt_min)
        out = {"loss": parts["contrastive"], "n_anchors": parts["n_anchors"], "floor": parts["floor"]}
        if self.hit_filter is not None:
            target = (batch["particle_id"] > 0) & (batch["pt"] > self.head_cfg.filter_pt)
            bce = masked_bce(outputs["filter"], target, batch["pad_mask"])
            loss = loss + self.head_cfg.filter_weight * bce
            out.update({"loss": float(loss.detach()), "filter_bce": float(bce.detach())})
        return loss, out


MODEL_CLASSES = {"enc_cla": EncCla, "enc_reg": EncReg, "jm": JointModel, "contrastive": ContrastiveModel}


def build_model(family: str, encoder_cfg: EncoderConfig | dict | str = "small", *,
                feature_cfg: FeatureConfig | None = None, binning: RoadBinning | None = None,
                track_params=None, encoder_overrides: dict | None = None, tokenizer: Tokenizer | None = None,
                **head_kwargs) -> TrackModel:
    """A model of ``family`` (one of FAMILIES).

    tokenizer: a trained :class:`~trackstudy.models.vqvae.HitTokenizer` makes a code-input model (see
    the module docstring; contrastive only): the features are the tokenizer's, and the encoder's
    ``n_features`` is set to its ``d_model`` (the width of the code embedding).

    encoder_cfg: an EncoderConfig, its dict, or a preset name (n_features then follows the
    feature list); ``encoder_overrides`` replaces fields of it (e.g. {"attention": "packed"}). For enc_cla/jm give a fitted ``binning`` (n_classes follows it) or ``n_classes``.
    head_kwargs: fields of :class:`HeadConfig` (noise, n_latent, cla_layers, alpha, beta, embed_dim,
    temperature, pt_min).
    """
    if family not in TOKEN_FAMILIES:
        raise ConfigError(f"model family {family!r} is not a hit-token model; choose from {', '.join(TOKEN_FAMILIES)}")
    if tokenizer is not None:
        feature_cfg = feature_cfg or getattr(tokenizer, "feature_cfg", None)
    feature_cfg = feature_cfg or FeatureConfig()
    if isinstance(encoder_cfg, str):
        encoder_cfg = EncoderConfig.preset(encoder_cfg, n_features=feature_cfg.n_features)
    elif isinstance(encoder_cfg, dict):
        encoder_cfg = EncoderConfig.from_dict(encoder_cfg)
    if encoder_overrides:
        try:
            encoder_cfg = replace(encoder_cfg, **encoder_overrides)
        except TypeError as exc:
            raise ConfigError(f"build_model: encoder_overrides: {exc}") from None
    if tokenizer is not None:
        encoder_cfg = replace(encoder_cfg, n_features=encoder_cfg.d_model)
    if binning is not None:
        if "n_classes" in head_kwargs and head_kwargs["n_classes"] != binning.n_classes:
            raise ConfigError(f"n_classes={head_kwargs['n_classes']} but the binning has {binning.n_classes} classes")
        head_kwargs["n_classes"] = binning.n_classes
    try:
        head_cfg = HeadConfig(family=family, **head_kwargs)
    except TypeError as exc:
        raise ConfigError(f"build_model: {exc}") from None
    if tokenizer is not None:
        if family not in CODE_FAMILIES:
            raise ConfigError(f"model.input: 'codes' is an option of the {', '.join(CODE_FAMILIES)} family, not "
                              f"of {family!r}")
        return MODEL_CLASSES[family](encoder_cfg, head_cfg, feature_cfg, binning, track_params, tokenizer)
    return MODEL_CLASSES[family](encoder_cfg, head_cfg, feature_cfg, binning, track_params)


def model_from_config(cfg: dict) -> TrackModel:
    """Rebuild a model (fresh weights) from :meth:`TrackModel.config_dict`; load the state dict after.
    A ``track_params`` entry (stored by runs beside the network's config) is left to the caller."""
    if cfg.get("family") == "gnn":
        return gnn_from_config(cfg)
    if cfg.get("family") == "doublet":
        try:
            return doublet_from_config(cfg)
        except KeyError as exc:
            raise ConfigError(f"model config: missing entry {exc}") from None
    try:
        binning = RoadBinning.from_state(cfg["binning"]) if cfg.get("binning") is not None else None
        head = HeadConfig.from_dict(cfg["head"])
        if head.family != cfg["family"]:
            raise ConfigError(f"model config: family {cfg['family']!r} but head family {head.family!r}")
        enc, feats = EncoderConfig.from_dict(cfg["encoder"]), FeatureConfig.from_dict(cfg["features"])
        if cfg.get("input", "features") not in INPUTS:
            raise ConfigError(f"model config: input {cfg.get('input')!r} unknown; choose from {', '.join(INPUTS)}")
        if cfg.get("input", "features") == "codes":
            if head.family not in CODE_FAMILIES:
                raise ConfigError(f"model config: input 'codes' is an option of the {', '.join(CODE_FAMILIES)} "
                                  f"family, not of {head.family!r}")
            if not cfg.get("tokenizer"):
                raise ConfigError("model config: input 'codes' without its tokenizer's config")
            return MODEL_CLASSES[head.family](enc, head, feats, binning, None, tokenizer_from_config(cfg["tokenizer"]))
        return MODEL_CLASSES[head.family](enc, head, feats, binning)
    except KeyError as exc:
        raise ConfigError(f"model config: missing entry {exc}") from None


__all__ = ["CODE_FAMILIES", "EDGE_FAMILIES", "FAMILIES", "INPUTS", "TOKEN_FAMILIES", "ContrastiveModel", "EncCla", "EncReg", "HeadConfig", "JointModel", "MODEL_CLASSES",
           "TrackModel", "build_model", "make_context", "model_from_config"]
