"""A compiled forward pass that does not recompile: events padded to a few size buckets.

``torch.compile`` specialises a graph to its input shapes, so a stream of events of different
sizes would compile once per size (and, past dynamo's recompile limit, silently fall back to
eager). :class:`BucketedModel` pads each event's hits to the next of a small set of sizes
(:data:`SIZE_BUCKETS`: powers of two from 1,024 to 131,072 hits) and compiles the per-hit parts of
the network (input projection, layer norms, the q/k/v and output projections, the MLP, the final
norm and the head) with static shapes; the attention between them, whose work depends on the
clusters rather than on N, runs eagerly through the model's backend
(:func:`trackstudy.models.attention.attend`, padding hits masked as everywhere). A stream of events
therefore compiles at most ``len(roles) x buckets seen`` graphs, whatever the sizes: the roles
(input, q/k/v, residual + MLP, output) are shared by all layers (torch.compile treats the
parameters of inlined modules as graph inputs), as the test counting compilations checks.

The outputs equal the model's own forward on the unpadded event (the padded hits never reach a
real one). Families with one encoder (contrastive, enc_cla, enc_reg); the joint model's second
stage is not wrapped.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from trackstudy.errors import ConfigError, DataError
from trackstudy.models.attention import AttentionContext, attend
from trackstudy.models.heads import TrackModel
from trackstudy.models.roads import REG_TARGETS

#: Padded event sizes (hits): a stream of events compiles once per bucket it reaches.
SIZE_BUCKETS = tuple(1024 * 2 ** k for k in range(8))


def bucket_size(n: int, buckets=SIZE_BUCKETS) -> int:
    """The smallest bucket >= n (beyond the largest: the next multiple of the largest)."""
    if n < 1:
        raise DataError(f"bucket_size: an event needs at least one hit, got {n}")
    for b in buckets:
        if b >= n:
            return int(b)
    top = int(buckets[-1])
    return -(-n // top) * top


class _Input(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.proj = encoder.input_proj

    def forward(self, x, real):  # (1, T, F), (1, T, 1) -> (1, T, C)
        return self.proj(torch.where(real, x, torch.zeros((), dtype=x.dtype, device=x.device)))


class _QKV(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.ln, self.proj = block.ln_1, block.attn.c_attn

    def forward(self, h):  # (1, T, C) -> (1, T, 3C)
        return self.proj(self.ln(h))


class _Post(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.out, self.ln, self.mlp = block.attn.c_proj, block.ln_2, block.mlp

    def forward(self, h, y):  # residual stream (1, T, C), attention output (1, T, C)
        h = h + self.out(y)
        return h + self.mlp(self.ln(h))


class _Head(nn.Module):
    def __init__(self, model: TrackModel):
        super().__init__()
        self.ln = model.encoder.ln_f
        self.family = model.family
        if model.family == "contrastive":
            self.a, self.b = model.projection, model.hit_filter
        elif model.family == "enc_cla":
            self.a, self.b = model.classifier, None
        else:
            self.a, self.b = model.regressor, None

    def forward(self, h):  # (1, T, C) -> the family's outputs
        h = self.ln(h)
        if self.family == "contrastive":
            out = {"embedding": self.a(h)}
            if self.b is not None:
                out["filter"] = self.b(h)[..., 0]
            return out
        if self.family == "enc_cla":
            return {"logits": self.a(h)}
        y = self.a(h)
        return {"params": y[..., : len(REG_TARGETS)], "latent": y[..., len(REG_TARGETS):]}


class BucketedModel:
    """``model``'s forward on one event padded to a size bucket, its per-hit parts compiled.

    ``compile_backend``: torch.compile's backend ("inductor"; tests pass a counting one);
    ``backend``: the attention backend (default the model's). Call with x (1, N, F) and cluster
    labels (1, N) (or None: full attention); returns the outputs (1, N, ...) as the model's forward."""

    def __init__(self, model: TrackModel, *, buckets=SIZE_BUCKETS, compile_backend="inductor",
                 backend: str | None = None):
        if model.family not in ("contrastive", "enc_cla", "enc_reg"):
            raise ConfigError(f"BucketedModel wraps one-encoder families (contrastive, enc_cla, enc_reg), "
                              f"not {model.family!r}")
        if model.tokenizer is not None:
            raise ConfigError("BucketedModel compiles the encoder on hit features; a model.input 'codes' model "
                              "runs uncompiled")
        self.model, self.buckets = model, tuple(int(b) for b in buckets)
        self.backend = backend or model.encoder_cfg.attention
        enc = model.encoder
        self.n_heads = enc.config.n_heads
        self.lsh = enc.config.lsh

        def compiled(module):
            return torch.compile(module, backend=compile_backend, dynamic=False)

        self._input = compiled(_Input(enc))
        self._qkv = [compiled(_QKV(b)) for b in enc.blocks]
        self._post = [compiled(_Post(b)) for b in enc.blocks]
        self._head = compiled(_Head(model))

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        return self.run(*self.prepare(x, labels))

    def prepare(self, x: torch.Tensor, labels: torch.Tensor | None = None, eta: torch.Tensor | None = None,
                phi: torch.Tensor | None = None):
        """``(x padded (1, T, F), AttentionContext of the padded event, n)``, T the bucket of n hits
        (eta, phi (1, N): for the lsh backend)."""
        if x.ndim != 3 or x.shape[0] != 1:
            raise DataError(f"BucketedModel: x must be (1, N, F), got {tuple(x.shape)}")
        n = x.shape[1]
        T = bucket_size(n, self.buckets)
        pad = T - n
        real = torch.zeros(1, T, dtype=torch.bool, device=x.device)
        real[:, :n] = True
        xp = torch.nn.functional.pad(x, (0, 0, 0, pad))
        lab = None
        if labels is not None:
            lab = torch.nn.functional.pad(labels.reshape(1, n).to(torch.int64), (0, pad), value=0)
        eta, phi = (None if a is None else torch.nn.functional.pad(a.reshape(1, n), (0, pad)) for a in (eta, phi))
        return xp, AttentionContext(real, lab, eta, phi), n

    @torch.no_grad()
    def run(self, xp: torch.Tensor, ctx: AttentionContext, n: int, backend: str | None = None) -> dict:
        """The outputs (1, n, ...) of a prepared event (:meth:`prepare`); ``backend``: the attention
        backend of this call (eager, not compiled; default the wrapper's)."""
        backend = backend or self.backend
        T = xp.shape[1]
        h = self._input(xp, ctx.pad_mask[..., None])
        C = h.shape[-1]
        for qkv_fn, post_fn in zip(self._qkv, self._post):
            q, k, v = qkv_fn(h).split(C, dim=2)
            q, k, v = (t.view(1, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
            y, _ = attend(q, k, v, ctx, backend, lsh=self.lsh)
            h = post_fn(h, y.transpose(1, 2).reshape(1, T, C))
        return {k: v[:, :n] for k, v in self._head(h).items()}


__all__ = ["SIZE_BUCKETS", "BucketedModel", "bucket_size"]
