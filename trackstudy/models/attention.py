"""Attention backends: one mathematics, selected by name.

Mask convention (once, for every backend): **True = may attend**. With cluster labels, a
real hit attends to the real hits of its own cluster; without labels, to every real hit. A
padding position attends only to itself (without labels: to the real hits), so its output is
finite and never reaches a real hit. Conversion to torch's conventions happens at the
boundary (SDPA's boolean ``attn_mask`` and FlexAttention's ``mask_mod`` also use True = take
part; ``nn.MultiheadAttention``'s ``key_padding_mask`` is the opposite and is not used here).

Backends (q, k, v are (B, H, T, hs); all return ``(out (B, H, T, hs), weights or None)``):

    dense     SDPA with the (B, 1, T, T) boolean mask. O(T^2) memory.
    flex      FlexAttention (compiled) with the cluster BlockMask on the cluster-sorted
              sequence; batches of events of different lengths via padding. Forward only on
              CPU (torch has no CPU backward for FlexAttention): raises ConfigError when a
              gradient is needed on CPU -- use ``packed`` there.
    packed    the same block-diagonal attention, clusters gathered into padded batches of
              similar length for SDPA; exact, differentiable everywhere, no O(T^2) tensor.
    lsh       HEPT-style LSH attention on (eta, phi), see :mod:`trackstudy.models.lsh`;
              an approximation of local attention, not of the cluster mask.
    explicit  materialises softmax(q k^T / sqrt(hs)) with the dense mask and returns the
              weights (B, H, T, T), for attention-map inspection.

``dense``, ``flex``, ``packed`` and ``explicit`` are exact: they compute the same function.

An :class:`AttentionContext` is built once per batch and read by every layer; it caches the
dense mask, the cluster permutation, the BlockMask, the packing and the LSH plan.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trackstudy.device import quiet_torch_compile
from trackstudy.errors import ConfigError, DataError
from trackstudy.models import masks as _masks
from trackstudy.models.geometry import pair_vectors
from trackstudy.models.lsh import LSHConfig, LSHPlan, lsh_attention, lsh_plan


class AttentionContext:
    """Per-batch attention metadata, shared by every layer.

    pad_mask        (B, T) bool, True = real hit (None: all real; then ``batch_size`` and
                    ``seq_len`` are required).
    cluster_labels  (B, T) int64 cluster of each hit (>= 0 on real hits; padding ignored), or
                    None for full attention among real hits.
    eta, phi        (B, T) float hit coordinates, needed by the ``lsh`` backend only.
    geometry        (B, T, 2) float (r, d) in mm of each hit (:mod:`trackstudy.models.geometry`),
                    set with :meth:`set_geometry` by the models whose encoder has ``geo_bias``.
    pack_growth     padding ladder of the ``packed`` backend (see ``masks.bin_capacity``).
    flex_block_size FlexAttention tile size.
    compile_block_mask  build the BlockMask with torch.compile (False: eager, O(T^2) memory;
                    meant for tiny tests).
    """

    def __init__(self, pad_mask: torch.Tensor | None = None, cluster_labels: torch.Tensor | None = None,
                 eta: torch.Tensor | None = None, phi: torch.Tensor | None = None, *,
                 batch_size: int | None = None, seq_len: int | None = None,
                 device: str | torch.device | None = None, pack_growth: float = 1.25,
                 flex_block_size: int = _masks.FLEX_BLOCK_SIZE, compile_block_mask: bool = True):
        if pad_mask is None:
            ref = cluster_labels if cluster_labels is not None else eta
            if ref is not None:
                shape = tuple(ref.shape) if ref.ndim == 2 else (1, ref.shape[0])
            elif batch_size is not None and seq_len is not None:
                shape = (int(batch_size), int(seq_len))
            else:
                raise ConfigError("AttentionContext: give pad_mask, cluster_labels, or batch_size and seq_len")
            dev = device if device is not None else (ref.device if ref is not None else "cpu")
            pad_mask = torch.ones(shape, dtype=torch.bool, device=dev)
        else:
            pad_mask = torch.as_tensor(pad_mask)
            if pad_mask.ndim == 1:
                pad_mask = pad_mask[None]
            if pad_mask.ndim != 2 or pad_mask.dtype != torch.bool:
                raise DataError(f"pad_mask must be a (B, T) boolean tensor (True = real hit), got "
                                f"{pad_mask.dtype} {tuple(pad_mask.shape)}")
            if device is not None:
                pad_mask = pad_mask.to(device)
        empty = ~pad_mask.any(dim=1)
        if bool(empty.any()):
            raise DataError(f"AttentionContext: event {int(empty.nonzero()[0])} of the batch has no real hits")
        self.pad_mask = pad_mask
        self.device = pad_mask.device
        self.batch_size, self.seq_len = (int(s) for s in pad_mask.shape)
        if cluster_labels is not None:
            labels = cluster_labels if isinstance(cluster_labels, torch.Tensor) else torch.as_tensor(cluster_labels)
            cluster_labels, _ = _masks.check_labels(labels.to(self.device), pad_mask)
        self.cluster_labels = cluster_labels
        self.eta = self._coord(eta, "eta")
        self.phi = self._coord(phi, "phi")
        self.pack_growth = pack_growth
        self.flex_block_size = flex_block_size
        self.compile_block_mask = compile_block_mask
        self.geometry = None
        self._cache: dict = {}

    def set_geometry(self, geometry: torch.Tensor) -> None:
        """Attach the hits' (r, d) geometry (B, T, 2) for the geometric attention bias."""
        if tuple(geometry.shape) != (self.batch_size, self.seq_len, 2):
            raise DataError(f"AttentionContext: geometry has shape {tuple(geometry.shape)}, expected "
                            f"{(self.batch_size, self.seq_len, 2)}")
        self.geometry = geometry.to(self.device)
        self._cache.pop("geometry_vectors", None)

    def geometry_vectors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The pair vectors (a, b) of the geometry (:func:`trackstudy.models.geometry.pair_vectors`),
        computed once per context."""
        if self.geometry is None:
            raise ConfigError("AttentionContext: no hit geometry attached (set_geometry)")
        if "geometry_vectors" not in self._cache:
            self._cache["geometry_vectors"] = pair_vectors(self.geometry)
        return self._cache["geometry_vectors"]

    def _coord(self, value, name):
        if value is None:
            return None
        value = torch.as_tensor(value).to(self.device)
        if value.ndim == 1:
            value = value[None]
        if tuple(value.shape) != (self.batch_size, self.seq_len):
            raise DataError(f"AttentionContext: {name} has shape {tuple(value.shape)}, expected "
                            f"{(self.batch_size, self.seq_len)}")
        return value

    @classmethod
    def from_events(cls, labels: list, eta: list | None = None, phi: list | None = None,
                    device: str | torch.device | None = None, **kwargs) -> AttentionContext:
        """Context for a batch of events given as per-event 1-D label arrays (and optional
        per-event eta/phi arrays); pads to the longest event."""
        lab, pad = _masks.batch_labels(labels, device=device)
        coords = []
        for values in (eta, phi):
            if values is None:
                coords.append(None)
                continue
            t = torch.zeros(lab.shape, dtype=torch.float32)
            for i, a in enumerate(values):
                t[i, : len(a)] = torch.as_tensor(a, dtype=torch.float32)
            coords.append(t.to(lab.device))
        return cls(pad, lab, coords[0], coords[1], **kwargs)

    @property
    def has_padding(self) -> bool:
        if "has_padding" not in self._cache:
            self._cache["has_padding"] = not bool(self.pad_mask.all())
        return self._cache["has_padding"]

    def _labels_or_one_cluster(self) -> torch.Tensor:
        if self.cluster_labels is not None:
            return self.cluster_labels
        return torch.zeros_like(self.pad_mask, dtype=torch.int64).masked_fill(~self.pad_mask, -1)

    def dense_mask(self) -> torch.Tensor | None:
        """Boolean SDPA mask, True = may attend: (B, 1, T, T) with cluster labels, (B, 1, 1, T)
        key-padding mask without them, None when neither restricts anything."""
        if "dense_mask" not in self._cache:
            if self.cluster_labels is not None:
                mask = _masks.cluster_mask(self.cluster_labels, self.pad_mask)[:, None]
            elif self.has_padding:
                mask = self.pad_mask[:, None, None, :]
            else:
                mask = None
            self._cache["dense_mask"] = mask
        return self._cache["dense_mask"]

    def cluster_order(self) -> _masks.ClusterOrder:
        if "order" not in self._cache:
            self._cache["order"] = _masks.cluster_order(self._labels_or_one_cluster(), self.pad_mask)
        return self._cache["order"]

    def flex_layout(self):
        """(perm (B, Tp), inverse (B, T), BlockMask) for the flex backend, Tp a multiple of the
        tile size; positions >= T of the sorted sequence are extra padding."""
        if "flex" not in self._cache:
            order = self.cluster_order()
            Tp = _masks.padded_length(self.seq_len, self.flex_block_size)
            sorted_labels = F.pad(order.sorted_labels, (0, Tp - self.seq_len), value=-1)
            perm = F.pad(order.perm, (0, Tp - self.seq_len), value=0)  # extra slots read hit 0, masked
            block_mask = _masks.block_mask_for_sorted(sorted_labels, self.flex_block_size,
                                                      compile=self.compile_block_mask)
            self._cache["flex"] = (perm, order.inverse, block_mask)
        return self._cache["flex"]

    def block_mask(self):
        """The FlexAttention BlockMask of the cluster-sorted batch (cached)."""
        return self.flex_layout()[2]

    def packing(self) -> _masks.Packing:
        if "packing" not in self._cache:
            self._cache["packing"] = _masks.pack_clusters(self._labels_or_one_cluster(), self.pad_mask,
                                                          growth=self.pack_growth)
        return self._cache["packing"]

    def lsh_plan(self, config: LSHConfig) -> LSHPlan:
        key = ("lsh", config)
        if key not in self._cache:
            if self.eta is None or self.phi is None:
                raise ConfigError("attention backend 'lsh' needs eta and phi in the AttentionContext")
            self._cache[key] = lsh_plan(self.eta, self.phi, self.pad_mask, config)
        return self._cache[key]


# --------------------------------------------------------------------------------------------
# backends


def _check(q, k, v, ctx):
    if q.ndim != 4 or q.shape != k.shape or q.shape != v.shape:
        raise DataError(f"attention: q, k, v must share a (B, H, T, hs) shape, got {tuple(q.shape)}, "
                        f"{tuple(k.shape)}, {tuple(v.shape)}")
    if (q.shape[0], q.shape[2]) != (ctx.batch_size, ctx.seq_len):
        raise DataError(f"attention: q has batch/length {(q.shape[0], q.shape[2])} but the context was built "
                        f"for {(ctx.batch_size, ctx.seq_len)}")
    if q.device != ctx.device:
        raise DataError(f"attention: q is on {q.device} but the context on {ctx.device}")


def dense_attention(q, k, v, ctx: AttentionContext):
    """SDPA with the dense boolean mask."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=ctx.dense_mask()), None


def explicit_attention(q, k, v, ctx: AttentionContext):
    """Materialised attention; returns the weights (B, H, T, T) (softmax in at least float32)."""
    acc = torch.promote_types(q.dtype, torch.float32)  # softmax in >= float32 (bf16 under autocast)
    scores = (q @ k.transpose(-2, -1)).to(acc) * (1.0 / math.sqrt(q.shape[-1]))  # (B, H, T, T)
    mask = ctx.dense_mask()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1).to(v.dtype)
    return weights @ v, weights


# FlexAttention must be compiled to run fused (and on CPU at all); compile once per process and
# device type. On the CPU with static shapes: after a second sequence length torch would compile a
# dynamic-shape kernel, and torch 2.13's C++ code generation of the CPU flex template fails on it
# (a C++ compile error); each length then gets its own static kernel instead.
_compiled_flex: dict[str, object] = {}


def _flex_fn(device_type: str = "cuda"):
    if device_type not in _compiled_flex:
        from torch.nn.attention.flex_attention import flex_attention

        with quiet_torch_compile():
            _compiled_flex[device_type] = torch.compile(flex_attention, dynamic=False if device_type == "cpu" else None)
    return _compiled_flex[device_type]


def flex_attention(q, k, v, ctx: AttentionContext):
    """FlexAttention on the cluster-sorted sequence with the cached BlockMask."""
    if q.device.type == "cpu" and torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)):
        raise ConfigError(f"attention backend 'flex' has no CPU backward in torch {torch.__version__}; "
                          "use 'packed' for training on CPU (or run flex under torch.no_grad())")
    B, H, T, hs = q.shape
    perm, inverse, block_mask = ctx.flex_layout()
    Tp = perm.shape[1]
    idx = perm[:, None, :, None].expand(B, H, Tp, hs)
    qs, ks, vs = (t.gather(2, idx) for t in (q, k, v))  # (B, H, Tp, hs), clusters contiguous
    with quiet_torch_compile():
        out = _flex_fn(q.device.type)(qs, ks, vs, block_mask=block_mask)
    return out.gather(2, inverse[:, None, :, None].expand(B, H, T, hs)), None


def packed_attention(q, k, v, ctx: AttentionContext):
    """Block-diagonal attention by packing clusters into padded SDPA batches.

    Memory: each bin gathers its rows of q, k and v straight from their (B*T, H, hs) row views
    (in the encoder these are strided views of the fused qkv projection, so nothing is copied
    up front) and writes its real rows into one preallocated output; the only full-size
    temporary is that output (B*T, H, hs), plus one bin's (n, H, C, hs) tensors at a time."""
    B, H, T, hs = q.shape
    pk = ctx.packing()
    q, k, v = (t.transpose(1, 2).reshape(B * T, H, hs) for t in (q, k, v))  # one row per hit (a view if possible)
    out = v.new_empty((B * T, H, hs))  # every row is written once: singles, then the bins' real slots
    out.index_copy_(0, pk.singles, v.index_select(0, pk.singles))  # one key: its own value
    for b in pk.bins:
        n, C = b.index.shape
        idx = b.index.reshape(-1)
        qb, kb, vb = (t.index_select(0, idx).view(n, C, H, hs).transpose(1, 2) for t in (q, k, v))  # (n, H, C, hs)
        ob = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=b.valid[:, None, None, :])
        del qb, kb, vb
        ob = ob.transpose(1, 2).reshape(n * C, H, hs).index_select(0, b.valid_slots)  # (m, H, hs) real slots
        out.index_copy_(0, b.targets, ob.to(out.dtype))  # SDPA may return autocast's dtype
        del ob
    return out.view(B, T, H, hs).transpose(1, 2), None


# --------------------------------------------------------------------------------------------
# the registry: every backend once, by name


@dataclass(frozen=True)
class Backend:
    """One attention backend: how it attends, what it builds first, what it can do.

    ``attend(q, k, v, ctx, lsh) -> (out, weights or None)``; ``prepare(ctx, lsh)`` builds and caches
    in ``ctx`` what the backend reads in every layer (masks, packing, hash buckets), so that the
    inference pipeline can time it as its own stage. ``exact``: computes the cluster-masked
    attention exactly (the exact backends agree to float tolerance); ``trainable``: selectable as
    a training backend; ``cpu_backward``: has a backward pass on the CPU."""

    name: str
    attend: Callable
    prepare: Callable
    exact: bool
    trainable: bool = True
    cpu_backward: bool = True
    description: str = ""


REGISTRY: dict[str, Backend] = {b.name: b for b in (
    Backend("dense", lambda q, k, v, ctx, lsh: dense_attention(q, k, v, ctx), lambda ctx, lsh: ctx.dense_mask(),
            exact=True, description="SDPA with the dense (B, T, T) cluster mask"),
    Backend("flex", lambda q, k, v, ctx, lsh: flex_attention(q, k, v, ctx), lambda ctx, lsh: ctx.flex_layout(),
            exact=True, cpu_backward=False, description="FlexAttention with a BlockMask of the cluster-sorted hits"),
    Backend("packed", lambda q, k, v, ctx, lsh: packed_attention(q, k, v, ctx), lambda ctx, lsh: ctx.packing(),
            exact=True, description="clusters packed into padded SDPA batches"),
    Backend("lsh", lambda q, k, v, ctx, lsh: (lsh_attention(q, k, v, ctx.lsh_plan(lsh or LSHConfig())), None),
            lambda ctx, lsh: ctx.lsh_plan(lsh or LSHConfig()), exact=False,
            description="locality-sensitive hashing of (eta, phi) into buckets (approximate)"),
    Backend("explicit", lambda q, k, v, ctx, lsh: explicit_attention(q, k, v, ctx), lambda ctx, lsh: ctx.dense_mask(),
            exact=True, trainable=False, description="materialised weights, for inspecting attention"),
)}
#: Names of every backend, of the exact ones, and of those a training config may choose.
BACKENDS = tuple(REGISTRY)
EXACT_BACKENDS = tuple(n for n, b in REGISTRY.items() if b.exact)
TRAIN_BACKENDS = tuple(n for n, b in REGISTRY.items() if b.trainable)


def get_backend(name: str, what: str = "attention backend") -> Backend:
    """The registered backend ``name``; ConfigError naming ``what`` and the choices otherwise."""
    if name not in REGISTRY:
        raise ConfigError(f"{what} {name!r} is unknown; choose from {', '.join(BACKENDS)}")
    return REGISTRY[name]


def build_masks(ctx: AttentionContext, backend: str, lsh: LSHConfig | None = None) -> None:
    """Build (and cache in ``ctx``) the attention metadata ``backend`` reads in every layer."""
    get_backend(backend).prepare(ctx, lsh)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext, backend: str = "dense",
           *, lsh: LSHConfig | None = None, need_weights: bool = False):
    """Attention of q, k, v (B, H, T, hs) by ``backend``; returns ``(out (B, H, T, hs), weights)``
    with weights (B, H, T, T) from the explicit backend and None otherwise.

    ``need_weights`` switches an exact backend to ``explicit`` (same function); it is an error
    with ``lsh``, whose attention is not the cluster-masked one."""
    _check(q, k, v, ctx)
    b = get_backend(backend)
    if need_weights:
        if not b.exact:
            raise ConfigError(f"attention weights are only available from the exact backends "
                              f"({', '.join(EXACT_BACKENDS)}), not {backend!r}")
        return explicit_attention(q, k, v, ctx)
    return b.attend(q, k, v, ctx, lsh)
