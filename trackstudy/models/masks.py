"""From a clustering of hits to the attention masks the encoder's backends consume.

Convention (stated once, used everywhere): **True = may attend**. A hit attends to every hit
of its own cluster; a padding position (``pad_mask`` False) attends only to itself, so that
its output is finite and never reaches a real hit. Torch's own conventions (FlexAttention's
``mask_mod`` returns True where allowed, as we do; SDPA boolean ``attn_mask`` True = take
part) are met at the boundary, here.

Inputs are batches of events padded to a common length T:

    labels    (B, T) int64, cluster label of each hit (>= 0 for every real hit; any value at
              padding positions, set to -1 here). Labels need not be contiguous.
    pad_mask  (B, T) bool, True = real hit.

Three equivalent representations of the block-diagonal (cluster) attention:

* :func:`cluster_mask` — the dense (B, T, T) boolean matrix: the reference, O(T^2) memory.
* :func:`cluster_order` + :func:`block_mask_for_sorted` — hits permuted so that each cluster
  is contiguous (padding last), and the FlexAttention ``BlockMask`` of the permuted sequence,
  built with ``create_block_mask`` under ``torch.compile`` and cached by content.
* :func:`pack_clusters` — the clusters gathered into padded batches of similar length for
  plain SDPA (no O(T^2) tensor anywhere; used on CPU where FlexAttention has no backward).

:func:`cluster_blocks` lays the clusters of one flat label vector out the same block-diagonal
way for the per-cluster work outside attention: the contrastive loss and the neighbour search
of track formation.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from trackstudy.device import quiet_torch_compile
from trackstudy.errors import ConfigError, DataError

#: FlexAttention's tile size; the sorted sequence is padded to a multiple of it.
FLEX_BLOCK_SIZE = 128


# --------------------------------------------------------------------------------------------
# batching and validation


def batch_labels(labels: Sequence[np.ndarray | torch.Tensor], length: int | None = None,
                 device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad per-event label arrays (each (N_i,) int) into ``(labels (B, T) int64, pad_mask
    (B, T) bool)`` with T = max N_i (or ``length``); padding labels are -1."""
    if len(labels) == 0:
        raise DataError("batch_labels: no events given")
    arrays = [torch.as_tensor(np.asarray(lab) if not isinstance(lab, torch.Tensor) else lab) for lab in labels]
    for i, a in enumerate(arrays):
        if a.ndim != 1:
            raise DataError(f"batch_labels: labels of event {i} must be 1-D, got shape {tuple(a.shape)}")
        if a.is_floating_point() or a.dtype == torch.bool:
            raise DataError(f"batch_labels: labels of event {i} must be integers, got {a.dtype}")
    n_max = max(a.numel() for a in arrays)
    T = n_max if length is None else int(length)
    if T < n_max:
        raise ConfigError(f"batch_labels: length={T} is shorter than the longest event ({n_max} hits)")
    out = torch.full((len(arrays), T), -1, dtype=torch.int64)
    pad = torch.zeros((len(arrays), T), dtype=torch.bool)
    for i, a in enumerate(arrays):
        out[i, : a.numel()] = a.to(torch.int64).cpu()
        pad[i, : a.numel()] = True
    if device is not None:
        out, pad = out.to(device), pad.to(device)
    return out, pad


def check_labels(labels: torch.Tensor, pad_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate (B, T) labels against the padding mask; returns ``(labels, pad_mask)`` with
    labels int64 and -1 at padding. Raises DataError for a negative label on a real hit."""
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(np.asarray(labels))
    if labels.ndim == 1:
        labels = labels[None]
    if labels.ndim != 2:
        raise DataError(f"cluster labels must have shape (B, T), got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise DataError(f"cluster labels must be integers (int64), got {labels.dtype}")
    labels = labels.to(torch.int64)
    if pad_mask is None:
        pad_mask = torch.ones_like(labels, dtype=torch.bool)
    else:
        if pad_mask.ndim == 1:
            pad_mask = pad_mask[None]
        if pad_mask.shape != labels.shape:
            raise DataError(f"pad_mask shape {tuple(pad_mask.shape)} differs from labels shape {tuple(labels.shape)}")
        if pad_mask.dtype != torch.bool:
            raise DataError(f"pad_mask must be boolean (True = real hit), got {pad_mask.dtype}")
        pad_mask = pad_mask.to(labels.device)
    bad = (labels < 0) & pad_mask
    if bool(bad.any()):
        b, t = (int(i) for i in bad.nonzero()[0])
        raise DataError(f"cluster labels: real hit {t} of event {b} has negative label {int(labels[b, t])} "
                        "(every real hit needs a cluster >= 0; DBSCAN noise becomes a singleton cluster)")
    return labels.masked_fill(~pad_mask, -1), pad_mask


# --------------------------------------------------------------------------------------------
# dense reference


def cluster_mask(labels: torch.Tensor, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The dense (B, T, T) attention mask, True = may attend: same cluster among real hits,
    and every position with itself. O(T^2) memory: the reference for the sparse forms."""
    labels, pad_mask = check_labels(labels, pad_mask)
    T = labels.shape[1]
    same = (labels[:, :, None] == labels[:, None, :]) & pad_mask[:, :, None] & pad_mask[:, None, :]
    return same | torch.eye(T, dtype=torch.bool, device=labels.device)


# --------------------------------------------------------------------------------------------
# permutation by cluster + FlexAttention BlockMask


@dataclass
class ClusterOrder:
    """Hits of each event permuted so that clusters are contiguous and padding comes last.

    ``perm[b, i]`` is the original position of the i-th hit in sorted order; ``inverse`` undoes
    it (``x_sorted.gather(1, inverse) == x``); ``sorted_labels`` are the labels in sorted order
    (-1 at padding)."""

    perm: torch.Tensor  # (B, T) int64
    inverse: torch.Tensor  # (B, T) int64
    sorted_labels: torch.Tensor  # (B, T) int64


def cluster_order(labels: torch.Tensor, pad_mask: torch.Tensor | None = None) -> ClusterOrder:
    """Sort each event's hits by cluster label (stable: original order inside a cluster),
    padding positions last."""
    labels, pad_mask = check_labels(labels, pad_mask)
    big = torch.iinfo(torch.int64).max
    key = labels.masked_fill(~pad_mask, big)
    perm = torch.argsort(key, dim=1, stable=True)
    inverse = torch.empty_like(perm)
    inverse.scatter_(1, perm, torch.arange(perm.shape[1], device=perm.device).expand_as(perm).contiguous())
    return ClusterOrder(perm=perm, inverse=inverse, sorted_labels=labels.gather(1, perm))


def _cluster_mask_mod(sorted_labels: torch.Tensor):
    """FlexAttention mask_mod (True = may attend) over a cluster-sorted sequence."""

    def mask_mod(b, h, q_idx, kv_idx):
        lq = sorted_labels[b, q_idx]
        return ((lq == sorted_labels[b, kv_idx]) & (lq >= 0)) | (q_idx == kv_idx)

    return mask_mod


# torch.compile(create_block_mask) evaluates the mask tile by tile without materialising the
# (T, T) boolean matrix; compiled once per process (it recompiles with dynamic shapes once).
_compiled_create_block_mask = None
_BLOCK_MASK_CACHE: OrderedDict = OrderedDict()
_BLOCK_MASK_CACHE_SIZE = 64


def _get_create_block_mask(compile: bool):
    global _compiled_create_block_mask
    from torch.nn.attention.flex_attention import create_block_mask

    if not compile:
        return create_block_mask
    if _compiled_create_block_mask is None:
        with quiet_torch_compile():
            _compiled_create_block_mask = torch.compile(create_block_mask)
    return _compiled_create_block_mask


def padded_length(T: int, block_size: int = FLEX_BLOCK_SIZE) -> int:
    """T rounded up to a multiple of ``block_size`` (the sorted sequence length for flex)."""
    return max(block_size, int(math.ceil(T / block_size)) * block_size)


def _content_key(sorted_labels: torch.Tensor, block_size: int, compile: bool) -> tuple:
    digest = hashlib.sha1(sorted_labels.detach().to("cpu").contiguous().numpy().tobytes()).hexdigest()
    return (digest, tuple(sorted_labels.shape), block_size, str(sorted_labels.device), compile)


def block_mask_for_sorted(sorted_labels: torch.Tensor, block_size: int = FLEX_BLOCK_SIZE,
                          compile: bool = True, cache: bool = True):
    """The FlexAttention ``BlockMask`` (B, 1, T, T) of a cluster-sorted sequence (labels -1 at
    padding; T must be a multiple of ``block_size``). Built with ``create_block_mask`` (compiled
    unless ``compile`` is False) and cached by the labels' content, so re-running an event
    (every epoch) reuses it."""
    if sorted_labels.ndim != 2:
        raise DataError(f"sorted labels must have shape (B, T), got {tuple(sorted_labels.shape)}")
    B, T = sorted_labels.shape
    if T % block_size:
        raise ConfigError(f"block_mask_for_sorted: length {T} is not a multiple of block_size={block_size} "
                          "(pad with -1 labels to padded_length(T))")
    key = _content_key(sorted_labels, block_size, compile) if cache else None
    if key is not None and key in _BLOCK_MASK_CACHE:
        _BLOCK_MASK_CACHE.move_to_end(key)
        return _BLOCK_MASK_CACHE[key]
    create = _get_create_block_mask(compile)
    with quiet_torch_compile():
        bm = create(_cluster_mask_mod(sorted_labels), B, None, T, T, device=sorted_labels.device,
                    BLOCK_SIZE=block_size)
    if key is not None:
        _BLOCK_MASK_CACHE[key] = bm
        while len(_BLOCK_MASK_CACHE) > _BLOCK_MASK_CACHE_SIZE:
            _BLOCK_MASK_CACHE.popitem(last=False)
    return bm


def clear_block_mask_cache() -> None:
    """Forget every cached BlockMask."""
    _BLOCK_MASK_CACHE.clear()


def block_mask_density(block_mask) -> float:
    """Fraction of (query tile, key tile) pairs that FlexAttention computes, over all events
    (1.0 = dense). Comparable to ``trackstudy.locality.measures.block_fraction``."""
    kv_num = block_mask.kv_num_blocks
    n_q_tiles = kv_num.shape[-1]
    n_kv_tiles = math.ceil(block_mask.seq_lengths[1] / block_mask.BLOCK_SIZE[1])
    total = kv_num.sum()
    if block_mask.full_kv_num_blocks is not None:
        total = total + block_mask.full_kv_num_blocks.sum()
    n_maps = kv_num.numel() // n_q_tiles
    return float(total) / float(n_maps * n_q_tiles * n_kv_tiles)


# --------------------------------------------------------------------------------------------
# packed representation for SDPA


@dataclass
class PackedBin:
    """Clusters of similar size gathered into one padded batch.

    ``index`` (n, C) are positions in the flattened (B*T) sequence, ``valid`` (n, C) marks the
    real entries (the rest are padding slots, index 0)."""

    index: torch.Tensor  # (n, C) int64
    valid: torch.Tensor  # (n, C) bool

    @property
    def valid_slots(self) -> torch.Tensor:
        """Flat positions (in n*C) of the real entries, row-major (cached)."""
        if getattr(self, "_valid_slots", None) is None:
            self._valid_slots = self.valid.reshape(-1).nonzero().squeeze(1)
        return self._valid_slots

    @property
    def targets(self) -> torch.Tensor:
        """Flat positions (in B*T) of the real entries, in ``valid_slots`` order (cached)."""
        if getattr(self, "_targets", None) is None:
            self._targets = self.index.reshape(-1).index_select(0, self.valid_slots)
        return self._targets

    @property
    def capacity(self) -> int:
        return int(self.index.shape[1])


@dataclass
class Packing:
    """Block-diagonal attention as padded batches of clusters (see :func:`pack_clusters`).

    Attention of a singleton cluster, and of a padding position, is its own value vector, so
    those positions (``singles``) skip the attention. Outputs are written in place,
    ``out[singles] = v[singles]`` and ``out[bin.targets] = out_bin[bin.valid]`` for every bin, or
    equivalently assembled as ``torch.cat([v[singles], out_bin0[valid0], ...])[gather_back]``."""

    bins: list[PackedBin]
    singles: torch.Tensor  # (S,) int64 flat positions that attend only to themselves
    gather_back: torch.Tensor  # (B*T,) int64
    batch_size: int
    seq_len: int

    @property
    def padded_slots(self) -> int:
        """Number of padding slots in the bins (the waste of the packing)."""
        return sum(int((~b.valid).sum()) for b in self.bins)

    @property
    def attention_pairs(self) -> int:
        """Query-key pairs computed, padding slots included."""
        return sum(int(b.index.shape[0]) * b.capacity ** 2 for b in self.bins) + int(self.singles.numel())


def bin_capacity(sizes: torch.Tensor, growth: float = 1.25, multiple: int = 8) -> torch.Tensor:
    """Padded length for clusters of the given sizes: the smallest value of the geometric
    ladder multiple * growth^k (rounded up to a multiple of ``multiple``) that holds the
    cluster; sizes <= ``multiple`` use their exact size. Bounds the padding waste per cluster
    to a factor ``growth`` (plus rounding) while keeping the number of SDPA calls small."""
    if growth <= 1.0:
        raise ConfigError(f"pack growth must be > 1, got {growth}")
    sizes = sizes.to(torch.int64)
    largest = int(sizes.max()) if sizes.numel() else 1
    ladder, k = [], 0
    while not ladder or ladder[-1] < largest:
        ladder.append(int(math.ceil(multiple * growth ** k / multiple)) * multiple)
        k += 1
    ladder_t = torch.tensor(sorted(set(ladder)), dtype=torch.int64, device=sizes.device)
    cap = ladder_t[torch.searchsorted(ladder_t, sizes.clamp(max=ladder_t[-1]))]
    return torch.where(sizes <= multiple, sizes, cap)


def pack_clusters(labels: torch.Tensor, pad_mask: torch.Tensor | None = None, *, growth: float = 1.25,
                  max_bin_elements: int = 2 ** 24) -> Packing:
    """Gather the clusters of a padded batch into padded batches for SDPA.

    Clusters are binned by :func:`bin_capacity`; a bin whose (n, C, C) score tensor would exceed
    ``max_bin_elements`` per head is split into several. Memory is O(sum of C^2) over clusters,
    never O(T^2). Singleton clusters and padding go to ``singles``."""
    labels, pad_mask = check_labels(labels, pad_mask)
    B, T = labels.shape
    device = labels.device
    flat_real = pad_mask.reshape(-1)
    idx_real = flat_real.nonzero().squeeze(1)  # (N,)
    if idx_real.numel() == 0:
        bins, singles = [], torch.arange(B * T, device=device)
    else:
        # Cluster id = rank of (event, label). One 1-D key instead of torch.unique(dim=1), which
        # splits the (2, N) key into N tensors and leaves ~300 bytes per hit of fragmented heap
        # behind (15 MB at 55k hits). Labels are first made dense so that the key cannot overflow.
        _, dense_label = torch.unique(labels.reshape(-1)[idx_real], return_inverse=True)
        key = (idx_real // T) * (int(dense_label.max()) + 1) + dense_label  # (N,) sorts as (event, label)
        _, cid, counts = torch.unique(key, return_inverse=True, return_counts=True)
        del dense_label, key
        order = torch.argsort(cid, stable=True)
        hit = idx_real[order]  # flat positions, grouped by cluster
        hit_cid = cid[order]
        starts = torch.cumsum(counts, 0) - counts
        pos = torch.arange(hit.numel(), device=device) - starts[hit_cid]  # slot inside the cluster
        caps = bin_capacity(counts, growth)
        hit_cap = caps[hit_cid]
        singles = torch.cat([(~flat_real).nonzero().squeeze(1), hit[hit_cap == 1]])
        bins = []
        for C in torch.unique(caps[caps > 1]).tolist():
            in_bin = caps == C
            cl = in_bin.nonzero().squeeze(1)  # cluster ids in this bin
            rank = torch.full_like(caps, -1)
            rank[cl] = torch.arange(cl.numel(), device=device)
            m = hit_cap == C
            rows, cols = rank[hit_cid[m]], pos[m]
            index = torch.zeros((cl.numel(), C), dtype=torch.int64, device=device)
            valid = torch.zeros((cl.numel(), C), dtype=torch.bool, device=device)
            index[rows, cols] = hit[m]
            valid[rows, cols] = True
            rows_per_chunk = max(1, max_bin_elements // (C * C))
            for s in range(0, cl.numel(), rows_per_chunk):
                bins.append(PackedBin(index[s:s + rows_per_chunk], valid[s:s + rows_per_chunk]))
    source = torch.cat([singles] + [b.targets for b in bins])
    if source.numel() != B * T:  # pragma: no cover - guards the bookkeeping above
        raise RuntimeError(f"pack_clusters: {source.numel()} positions packed, expected {B * T}")
    gather_back = torch.empty_like(source)
    gather_back[source] = torch.arange(source.numel(), device=device)
    return Packing(bins=bins, singles=singles, gather_back=gather_back, batch_size=B, seq_len=T)


def _capacities(max_size: int, growth: float) -> torch.Tensor:
    """Padded block sizes: 2, 4, 8, then multiples of 8 growing by ``growth`` (up to max_size)."""
    caps = [2, 4, 8]
    while caps[-1] < max_size:
        caps.append(max(caps[-1] + 8, int(math.ceil(caps[-1] * growth / 8)) * 8))
    return torch.tensor(caps, dtype=torch.int64)


def cluster_blocks(labels: torch.Tensor, *, min_size: int = 2, max_block_elements: int = 1 << 24,
                   growth: float = 1.25):
    """Yield the clusters of ``labels`` (N,) int64 as padded blocks, for block-diagonal work.

    Clusters are padded to the next size of a ladder (2, 4, 8, then multiples of 8 growing by
    ``growth``) and clusters of equal padded size S are stacked: each yield is ``(idx, valid)``,
    idx (G, S) int64 positions into ``labels`` (padding slots repeat the cluster's first hit),
    valid (G, S) bool. At most ``max_block_elements`` = G * S * S per block, so a (G, S, S)
    similarity tensor stays bounded. Labels < 0 and clusters smaller than ``min_size`` are skipped.
    Cost: sum over clusters of S^2 <= ~growth^2 * sum of size^2 (+ small-cluster rounding), never N^2.
    Used by the contrastive loss and by track formation's neighbour search (one flat label vector,
    queries at every padded slot), where :func:`pack_clusters` serves the attention of a batch.
    """
    if labels.dtype != torch.int64:
        raise ConfigError(f"cluster labels must be int64, got {labels.dtype}")
    if growth <= 1.0:
        raise ConfigError(f"cluster_blocks: growth must be > 1, got {growth}")
    sel = (labels >= 0).nonzero().squeeze(1)
    if sel.numel() == 0:
        return
    _, group, counts = torch.unique(labels[sel], return_inverse=True, return_counts=True)
    order = sel[torch.argsort(group, stable=True)]  # positions sorted by cluster
    starts = torch.cumsum(counts, 0) - counts
    keep = counts >= min_size
    if not keep.any():
        return
    starts, counts = starts[keep], counts[keep]
    caps = _capacities(int(counts.max()), growth).to(labels.device)
    bucket = torch.searchsorted(caps, counts)  # first capacity >= size
    for bk in torch.unique(bucket).tolist():
        s = int(caps[bk])
        in_b = bucket == bk
        bs, bn = starts[in_b], counts[in_b]
        chunk = max(1, max_block_elements // (s * s))
        ar = torch.arange(s, device=labels.device)
        for c0 in range(0, bs.numel(), chunk):
            st, n = bs[c0:c0 + chunk], bn[c0:c0 + chunk]
            valid = ar[None, :] < n[:, None]  # (G, S)
            pos = torch.where(valid, st[:, None] + ar[None, :], st[:, None])
            yield order[pos], valid
