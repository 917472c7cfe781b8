"""HEPT-style locality-sensitive-hashing attention (Miao et al., ICML 2024, "Locality-Sensitive
Hashing-Based Efficient Point Transformer", the seeds' reference [6]).

The learning-free alternative to explicit clustering: hits that are close in (eta, phi) are
hashed into the same bucket with high probability, and attention is computed only inside
buckets. What is implemented, exactly:

1. Hash coordinates u = (eta, cos phi, sin phi) of each hit. The (cos, sin) pair makes phi
   periodic; their chord distance is 2 sin(dphi/2) ~ dphi, so |u_i - u_j| ~ Delta R.
2. E2LSH (Datar et al. 2004): h(u) = floor((a . u + b) / w) with a ~ N(0, I_3),
   b ~ U[0, w), w = ``bucket_width``. Each *round* (hash table) uses ``n_projections``
   such hashes and a bucket is their tuple (AND-combination: more projections = finer,
   more selective buckets). ``n_rounds`` independent tables are drawn (OR-combination: a
   pair that collides in any round interacts). Projections come from
   ``numpy.random.default_rng(seed)``, so the hashing is a fixed function of the coordinates.
3. Per round and event, hits are sorted by bucket (ties broken by the first projection,
   which keeps neighbours adjacent inside a large bucket) and the sorted sequence is cut into
   blocks of ``block_size``. A query attends to the keys of its own block that share its
   bucket (and always to itself); this bounds the cost at O(T * block_size) per round and
   head whatever the bucket sizes are.
4. The rounds are combined as in HEPT: the unnormalised numerators and the softmax
   denominators of all rounds are summed, i.e. out_i = sum_r sum_j e^{s_ij} v_j /
   sum_r sum_j e^{s_ij} (a key met in several rounds counts several times). It is computed
   stably with the per-round log-sum-exp.

Differences from HEPT's code: HEPT hashes the query/key vectors augmented with weighted
coordinates and uses a Gaussian (RBF) kernel; here the hash uses the coordinates only (it is
shared by all heads and layers, computed once per batch) and the kernel is the softmax of the
other backends, so with one bucket and ``block_size >= T`` LSH attention equals dense
attention exactly. Padding hits are sorted last, get bucket -1 and attend only to themselves.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from trackstudy.errors import ConfigError, DataError


@dataclass(frozen=True)
class LSHConfig:
    """Hashing parameters of the ``lsh`` backend (coordinates: eta, phi in radians)."""

    n_rounds: int = 3  # OR: independent hash tables whose attention is combined
    n_projections: int = 2  # AND: E2LSH hashes per table that must all agree
    bucket_width: float = 0.1  # E2LSH w, in units of Delta R = sqrt(deta^2 + dphi^2)
    block_size: int = 128  # attention window of the sorted sequence
    seed: int = 0

    def __post_init__(self):
        for name in ("n_rounds", "n_projections", "block_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"LSHConfig.{name} must be a positive integer, got {value!r}")
        if not (np.isfinite(self.bucket_width) and self.bucket_width > 0):
            raise ConfigError(f"LSHConfig.bucket_width must be a positive number, got {self.bucket_width!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def lsh_projections(config: LSHConfig) -> tuple[np.ndarray, np.ndarray]:
    """The E2LSH parameters: a (n_rounds, n_projections, 3) ~ N(0, 1) and
    b (n_rounds, n_projections) ~ U[0, bucket_width), drawn from ``config.seed``."""
    rng = np.random.default_rng(config.seed)
    a = rng.standard_normal((config.n_rounds, config.n_projections, 3))
    b = rng.uniform(0.0, config.bucket_width, size=(config.n_rounds, config.n_projections))
    return a, b


def lsh_buckets(eta: torch.Tensor, phi: torch.Tensor, pad_mask: torch.Tensor, config: LSHConfig
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Bucket ids (R, B, T) int64 (-1 at padding) and the first projection (R, B, T) float64
    used to order hits inside a bucket."""
    if eta.shape != pad_mask.shape or phi.shape != pad_mask.shape:
        raise DataError(f"lsh: eta {tuple(eta.shape)} and phi {tuple(phi.shape)} must have the padding "
                        f"mask's shape {tuple(pad_mask.shape)}")
    real = pad_mask
    eta64, phi64 = eta.detach().to(torch.float64), phi.detach().to(torch.float64)
    if not bool(torch.isfinite(eta64[real]).all() & torch.isfinite(phi64[real]).all()):
        raise DataError("lsh: eta/phi of a real hit is not finite")
    u = torch.stack([eta64, torch.cos(phi64), torch.sin(phi64)], dim=-1).masked_fill(~real[..., None], 0.0)
    a_np, b_np = lsh_projections(config)
    a = torch.as_tensor(a_np, device=eta.device)
    b = torch.as_tensor(b_np, device=eta.device)
    proj = torch.einsum("btc,rpc->rpbt", u, a)  # (R, P, B, T)
    h = torch.floor((proj + b[:, :, None, None]) / config.bucket_width).to(torch.int64)
    # Combine the P hashes of a round into one id (mixed radix over the observed ranges).
    R, P = h.shape[:2]
    ids = torch.zeros((R,) + tuple(pad_mask.shape), dtype=torch.int64, device=eta.device)
    if bool(real.any()):
        hr = h[:, :, real]  # (R, P, N)
        lo, hi = hr.min(dim=-1).values, hr.max(dim=-1).values  # (R, P)
        span = (hi - lo + 1).to(torch.float64)
        if float(span.log2().sum(dim=1).max()) > 62:
            raise ConfigError(f"LSHConfig.bucket_width={config.bucket_width} is too small for the coordinate "
                              "range (bucket ids overflow int64)")
        for p in range(P):
            ids = ids * (hi[:, p] - lo[:, p] + 1)[:, None, None] + (h[:, p] - lo[:, p, None, None])
    ids = ids.masked_fill(~real[None], -1)
    return ids, proj[:, 0]


@dataclass
class LSHPlan:
    """Per-round sort of a batch, shared by every head and layer.

    ``perm`` (R, B, Tp): original position of each sorted slot, Tp = T rounded up to a
    multiple of the block size (slots >= T are extra padding); ``inverse`` (R, B, Tp);
    ``sorted_ids`` (R, B, Tp) bucket ids in sorted order (-1 = padding)."""

    perm: torch.Tensor
    inverse: torch.Tensor
    sorted_ids: torch.Tensor
    seq_len: int
    block_size: int

    @property
    def n_rounds(self) -> int:
        return int(self.perm.shape[0])


def lsh_plan(eta: torch.Tensor, phi: torch.Tensor, pad_mask: torch.Tensor, config: LSHConfig) -> LSHPlan:
    """Hash (eta, phi) and sort every round; see the module docstring."""
    ids, first_proj = lsh_buckets(eta, phi, pad_mask, config)
    R, B, T = ids.shape
    bs = config.block_size
    Tp = max(bs, int(math.ceil(T / bs)) * bs)
    extra = Tp - T
    big = torch.iinfo(torch.int64).max
    key = ids.masked_fill(ids < 0, big)
    if extra:
        key = torch.cat([key, key.new_full((R, B, extra), big)], dim=-1)
        first_proj = torch.cat([first_proj, first_proj.new_zeros((R, B, extra))], dim=-1)
        ids = torch.cat([ids, ids.new_full((R, B, extra), -1)], dim=-1)
    # Two stable sorts: by projection, then by bucket -> bucket-major, projection-minor order.
    order = torch.argsort(first_proj, dim=-1, stable=True)
    perm = order.gather(-1, torch.argsort(key.gather(-1, order), dim=-1, stable=True))
    inverse = torch.empty_like(perm)
    inverse.scatter_(-1, perm, torch.arange(Tp, device=perm.device).expand_as(perm).contiguous())
    return LSHPlan(perm=perm, inverse=inverse, sorted_ids=ids.gather(-1, perm), seq_len=T, block_size=bs)


def lsh_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: LSHPlan,
                  scale: float | None = None) -> torch.Tensor:
    """LSH attention of q, k, v (B, H, T, hs) following ``plan``; returns (B, H, T, hs).
    Differentiable (gathers and dense block products only)."""
    B, H, T, hs = q.shape
    if T != plan.seq_len:
        raise DataError(f"lsh: sequence length {T} differs from the plan's {plan.seq_len}")
    scale = 1.0 / math.sqrt(hs) if scale is None else scale
    bs, Tp = plan.block_size, plan.perm.shape[-1]
    nb = Tp // bs
    # Rows of (q, k, v) per hit, so that sorting is one contiguous row gather per round.
    qkv = torch.stack([q, k, v], dim=2).permute(0, 3, 1, 2, 4)  # (B, T, H, 3, hs)
    if Tp > T:
        qkv = torch.nn.functional.pad(qkv, (0, 0, 0, 0, 0, 0, 0, Tp - T))
    qkv = qkv.reshape(B * Tp, H, 3, hs)
    offset = (torch.arange(B, device=q.device) * Tp)[:, None]  # (B, 1)
    eye = torch.eye(bs, dtype=torch.bool, device=q.device)
    acc = torch.promote_types(q.dtype, torch.float32)  # softmax in >= float32 (bf16 under autocast)
    outs, lses = [], []
    for r in range(plan.n_rounds):
        rows = (plan.perm[r] + offset).reshape(-1)
        s_qkv = qkv.index_select(0, rows).view(B, nb, bs, H, 3, hs).permute(4, 0, 3, 1, 2, 5)  # (3, B, H, nb, bs, hs)
        qs, ks, vs = s_qkv[0], s_qkv[1], s_qkv[2]
        ids = plan.sorted_ids[r].view(B, 1, nb, bs)
        allowed = ((ids[..., :, None] == ids[..., None, :]) & (ids[..., :, None] >= 0)) | eye  # (B, 1, nb, bs, bs)
        scores = (qs @ ks.transpose(-1, -2)).to(acc) * scale  # (B, H, nb, bs, bs)
        scores = scores.masked_fill_(~allowed, float("-inf"))
        top = scores.amax(dim=-1, keepdim=True)  # finite: every query may attend to itself
        p = torch.exp(scores - top)
        denom = p.sum(dim=-1)  # (B, H, nb, bs)
        o = (p.to(vs.dtype) @ vs) / denom[..., None].to(vs.dtype)  # (B, H, nb, bs, hs)
        lse = top[..., 0] + torch.log(denom)
        back = (plan.inverse[r] + offset).reshape(-1)
        o = o.permute(0, 2, 3, 1, 4).reshape(B * Tp, H, hs).index_select(0, back)  # original order
        outs.append(o.view(B, Tp, H, hs))
        lses.append(lse.permute(0, 2, 3, 1).reshape(B * Tp, H).index_select(0, back).view(B, Tp, H))
    weights = torch.softmax(torch.stack(lses), dim=0)  # (R, B, Tp, H): share of each round
    out = (weights[..., None].to(outs[0].dtype) * torch.stack(outs)).sum(dim=0)  # (B, Tp, H, hs)
    return out[:, :T].transpose(1, 2)


def lsh_pair_fraction(plan: LSHPlan, pad_mask: torch.Tensor) -> float:
    """Fraction of real (query, key) pairs that interact in at least one round (1.0 = dense).
    Builds a (B, T, T) boolean: a diagnostic for small events, not for 55k hits."""
    B, T = pad_mask.shape
    n_real = pad_mask.sum(dim=1).to(torch.float64)
    total = float((n_real ** 2).sum())
    if total == 0:
        return 0.0
    bs, Tp = plan.block_size, plan.perm.shape[-1]
    seen = torch.zeros((B, T, T), dtype=torch.bool, device=pad_mask.device)
    for r in range(plan.n_rounds):
        ids = plan.sorted_ids[r].view(B, Tp // bs, bs)
        pos = plan.perm[r].view(B, Tp // bs, bs)
        pair = (ids[..., :, None] == ids[..., None, :]) & (ids[..., :, None] >= 0)
        b, blk, i, j = pair.nonzero(as_tuple=True)
        seen[b, pos[b, blk, i], pos[b, blk, j]] = True
    return float(seen.sum()) / total
