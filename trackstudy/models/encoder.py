"""The encoder-only transformer of the TrackFormers papers, in one readable file (nanoGPT-style).

Public API (stable; the heads in ``trackstudy.models.heads`` build on it)::

    EncoderConfig(n_features=7, d_model=192, n_heads=4, n_layers=12, d_ff=384, dropout=0.0,
                  bias=True, activation="gelu", attention="dense", norm_eps=1e-5,
                  lsh_rounds=3, lsh_projections=2, lsh_bucket_width=0.1, lsh_block_size=128,
                  lsh_seed=0, geo_bias=False)
        .head_dim, .lsh (LSHConfig), .to_dict(), EncoderConfig.from_dict(d),
        EncoderConfig.preset(name, **overrides)   # names in PRESETS
    PRESETS: dict[str, dict]     # "paper" (12 x 4 heads, d=192, FFN 384), "cms" (~38 M), "small", "tiny"
    Encoder(config)
        .forward(x, ctx=None, *, backend=None, return_attention=False)
            x    (B, T, n_features) float per-hit features (trackstudy.models.features)
            ctx  AttentionContext (padding mask, cluster labels, eta/phi) or None (all real,
                 full attention)
            -> (B, T, d_model) embeddings (zero at padding positions), or with
               return_attention=True a tuple (embeddings, [per-layer weights (B, H, T, T)])
        .num_parameters(trainable_only=False) -> int
    parameter_count(config) -> int;  preset_parameter_counts() -> dict[str, int]
    AttentionContext, BACKENDS, EXACT_BACKENDS   (re-exported from trackstudy.models.attention)

Hits are a set: no positional encoding. Every hit's features are projected to d_model, go
through pre-norm blocks (x + attn(ln(x)), x + mlp(ln(x))) and a final LayerNorm. The padding
mask is honoured everywhere: padding positions never influence real hits (attention masks
them as keys, every other operation is per hit) and their embeddings are returned as zeros.
Dropout acts on the residual branches and inside the MLP; attention weights are not dropped,
so that every backend computes the same function (FlexAttention has no attention dropout).

``geo_bias=True`` adds the geometric attention bias of :mod:`trackstudy.models.geometry` to every
layer: each head's scores get -lambda_h times the beam-line residual (z0 x lever arm)^2 of the hit
pair, as extra query / key channels (so every backend computes it), lambda_h learned. The hits'
(r, d) geometry comes in the AttentionContext (``ctx.set_geometry``), attached by the hit-token
models from their features.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import torch
import torch.nn as nn

from trackstudy.errors import ConfigError, DataError
from trackstudy.models.attention import BACKENDS, EXACT_BACKENDS, AttentionContext, attend, get_backend
from trackstudy.models.geometry import GeometricBias
from trackstudy.models.lsh import LSHConfig

__all__ = ["EncoderConfig", "Encoder", "PRESETS", "parameter_count", "preset_parameter_counts",
           "AttentionContext", "BACKENDS", "EXACT_BACKENDS"]

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


@dataclass
class EncoderConfig:
    n_features: int = 7  # per-hit input features (default: x, y, z, r, sin phi, cos phi, eta)
    d_model: int = 192
    n_heads: int = 4
    n_layers: int = 12
    d_ff: int = 384  # feed-forward width
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms
    activation: str = "gelu"
    attention: str = "dense"  # default backend, one of BACKENDS
    norm_eps: float = 1e-5
    lsh_rounds: int = 3
    lsh_projections: int = 2
    lsh_bucket_width: float = 0.1
    lsh_block_size: int = 128
    lsh_seed: int = 0
    geo_bias: bool = False  # beam-line residual of every hit pair as a per-head attention bias (models.geometry)

    def __post_init__(self):
        for name in ("n_features", "d_model", "n_heads", "n_layers", "d_ff"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"EncoderConfig.{name} must be a positive integer, got {value!r}")
        if self.d_model % self.n_heads:
            raise ConfigError(f"EncoderConfig: d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"EncoderConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.activation not in _ACTIVATIONS:
            raise ConfigError(f"EncoderConfig.activation {self.activation!r} unknown; choose from "
                              f"{', '.join(_ACTIVATIONS)}")
        get_backend(self.attention, "EncoderConfig.attention")
        self.lsh  # validates the LSH fields

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def lsh(self) -> LSHConfig:
        return LSHConfig(n_rounds=self.lsh_rounds, n_projections=self.lsh_projections,
                         bucket_width=self.lsh_bucket_width, block_size=self.lsh_block_size, seed=self.lsh_seed)

    def to_dict(self) -> dict:
        """Plain dict (ints, floats, strings) to store in checkpoints (weights_only loading)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EncoderConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"EncoderConfig: unknown field {unknown[0]!r}")
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **overrides) -> EncoderConfig:
        """A preset from :data:`PRESETS`, with fields overridden by keyword."""
        if name not in PRESETS:
            raise ConfigError(f"encoder preset {name!r} unknown; choose from {', '.join(PRESETS)}")
        base = cls(**PRESETS[name])
        try:
            return replace(base, **overrides)
        except TypeError as exc:
            raise ConfigError(f"encoder preset {name!r}: {exc}") from None


#: Named sizes. "paper": TrackFormers Part 2 (12 layers, 4 heads, d = 192, FFN 384; ~3.6 M
#: parameters); "cms": the CMS Phase-2 proposal's ~30-50 M transformer (~38 M); "small" and
#: "tiny": CPU sizes for tests, notebooks and smoke runs.
PRESETS: dict[str, dict] = {
    "paper": dict(d_model=192, n_heads=4, n_layers=12, d_ff=384),
    "cms": dict(d_model=512, n_heads=8, n_layers=12, d_ff=2048),
    "small": dict(d_model=64, n_heads=4, n_layers=4, d_ff=128),
    "tiny": dict(d_model=32, n_heads=2, n_layers=2, d_ff=64),
}


class SelfAttention(nn.Module):
    """Multi-head self-attention over the hits of each event; the backend does the mixing."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.n_heads = config.n_heads
        self.c_attn = nn.Linear(config.d_model, 3 * config.d_model, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.lsh = config.lsh
        self.geo = GeometricBias(config.n_heads, config.head_dim) if config.geo_bias else None

    def forward(self, x, ctx: AttentionContext, backend: str, need_weights: bool = False):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if self.geo is not None:  # extra q / k channels carry the pair bias; the output's first hs are the result
            hs, dtype = q.shape[-1], q.dtype
            q, k, v = self.geo.augment(q, k, v, *ctx.geometry_vectors())
            y, weights = attend(q, k, v, ctx, backend, lsh=self.lsh, need_weights=need_weights)
            y = y[..., :hs].to(dtype)
        else:
            y, weights = attend(q, k, v, ctx, backend, lsh=self.lsh, need_weights=need_weights)
        del q, k, v  # frees the (B, T, 3C) projection before c_proj (autograd keeps what it saved)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y)), weights


class MLP(nn.Module):
    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.d_model, config.d_ff, bias=config.bias)
        self.act = _ACTIVATIONS[config.activation]()
        self.c_proj = nn.Linear(config.d_ff, config.d_model, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm transformer block. Without autograd (no_grad / inference_mode) the residual
    stream is updated in place: the input ``x`` is overwritten, which saves two (B, T, C)
    tensors per block (the encoder owns that tensor)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, ctx: AttentionContext, backend: str, need_weights: bool = False):
        a, weights = self.attn(self.ln_1(x), ctx, backend, need_weights)
        x = _residual_add(x, a)
        del a
        x = _residual_add(x, self.mlp(self.ln_2(x)))
        return x, weights


def _residual_add(x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """x + branch; in place when autograd is off (autograd would need x, e.g. for LayerNorm)."""
    return x + branch if torch.is_grad_enabled() else x.add_(branch)


class Encoder(nn.Module):
    """Per-hit features (B, T, F) -> per-hit embeddings (B, T, d_model)."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        self.input_proj = nn.Linear(config.n_features, config.d_model, bias=config.bias)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layers)])
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=config.bias)
        self.apply(self._init_weights)
        # GPT-2 scaling of the residual projections keeps the residual stream's variance
        # independent of depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def forward(self, x: torch.Tensor, ctx: AttentionContext | None = None, *, backend: str | None = None,
                return_attention: bool = False, token_embedding: torch.Tensor | None = None):
        """Embeddings (B, T, d_model) of hits x (B, T, n_features); see the module docstring.
        ``backend`` overrides ``config.attention`` for this call; ``return_attention`` uses the
        explicit backend (same function as dense/flex/packed) and also returns the per-layer
        weights (B, n_heads, T, T). ``token_embedding`` (B, T, d_model) is added to the input
        embeddings (masked-token pretraining adds its learned mask embedding to the masked hits)."""
        if x.ndim != 3 or x.shape[-1] != self.config.n_features:
            raise DataError(f"Encoder: input must have shape (B, T, {self.config.n_features}), got {tuple(x.shape)}")
        B, T, _ = x.shape
        if ctx is None:
            ctx = AttentionContext(batch_size=B, seq_len=T, device=x.device)
        elif (ctx.batch_size, ctx.seq_len) != (B, T):
            raise DataError(f"Encoder: the AttentionContext is for (B, T) = {(ctx.batch_size, ctx.seq_len)}, "
                            f"the input has {(B, T)}")
        backend = backend or self.config.attention
        if return_attention and not get_backend(backend).exact:
            raise ConfigError(f"return_attention needs an exact backend ({', '.join(EXACT_BACKENDS)}); "
                              f"{backend!r} does not compute the cluster-masked attention")
        if self.config.geo_bias and ctx.geometry is None:
            raise ConfigError("EncoderConfig.geo_bias: the AttentionContext has no hit geometry; the hit-token "
                              "models (enc_cla, enc_reg, jm, contrastive) attach it from their features")
        real = ctx.pad_mask[..., None]  # (B, T, 1)
        # Padding rows may hold anything (NaN included); zero them so nothing non-finite enters.
        x = torch.where(real, x, torch.zeros((), dtype=x.dtype, device=x.device))
        h = self.input_proj(x)  # (B, T, C)
        if token_embedding is not None:
            h = h + token_embedding
        h = self.drop(h)
        maps = []
        if backend == "packed" and not return_attention:
            h = self._blocks_by_cluster(h, ctx)
        else:
            for block in self.blocks:
                h, weights = block(h, ctx, backend, need_weights=return_attention)
                if return_attention:
                    maps.append(weights)
        h = self.ln_f(h)
        h = torch.where(real, h, torch.zeros((), dtype=h.dtype, device=h.device))
        return (h, maps) if return_attention else h

    def _blocks_by_cluster(self, h: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """The blocks with block-diagonal (cluster) attention, run on the clusters packed as padded
        batches (``ctx.packing()``, the packed backend's bins).

        Attention never crosses a cluster and every other operation acts on one hit at a time, so
        each bin of clusters goes through all the blocks as a batch of short sequences with a
        key-padding mask (dense SDPA): the same outputs as gathering the bins inside every layer
        (``packed_attention``), without a gather, a scatter and two layout copies of q, k, v and
        the output per layer (a quarter of the encoder's time on a 48k-hit event on the CPU).
        Hits alone in their cluster (``singles``) attend to themselves: sequences of length 1."""
        B, T, C = h.shape
        pk = ctx.packing()
        flat = h.reshape(B * T, C)
        out = torch.zeros_like(flat)
        singles = pk.singles[ctx.pad_mask.reshape(-1).index_select(0, pk.singles)]  # padding stays zero
        groups = [(singles[:, None], None, None, singles)]
        groups += [(b.index, b.valid, b.valid_slots, b.targets) for b in pk.bins]
        for index, valid, slots, targets in groups:
            if index.numel() == 0:
                continue
            n, S = index.shape
            x = flat.index_select(0, index.reshape(-1)).view(n, S, C)
            bctx = AttentionContext(valid) if valid is not None else AttentionContext(batch_size=n, seq_len=1,
                                                                                      device=h.device)
            if ctx.geometry is not None:  # the bins' rows of the hit geometry
                bctx.set_geometry(ctx.geometry.reshape(B * T, -1).index_select(0, index.reshape(-1)).view(n, S, -1))
            for block in self.blocks:
                x, _ = block(x, bctx, "dense")
            rows = x.reshape(n * S, C)
            rows = rows if slots is None else rows.index_select(0, slots)
            out.index_copy_(0, targets, rows.to(out.dtype))  # autocast may hand back another dtype
        return out.view(B, T, C)


def parameter_count(config: EncoderConfig) -> int:
    """Number of parameters of ``Encoder(config)`` (built on the meta device: no memory)."""
    with torch.device("meta"):
        return Encoder(config).num_parameters()


def preset_parameter_counts(n_features: int = 7) -> dict[str, int]:
    """Parameter count of every preset."""
    return {name: parameter_count(EncoderConfig.preset(name, n_features=n_features)) for name in PRESETS}
