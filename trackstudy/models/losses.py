"""Loss functions of the track-finding heads; every one ignores padding.

Batch conventions (see :func:`trackstudy.training.targets.collate`): tensors are (B, T, ...),
``pad_mask`` (B, T) is True on real hits, class labels use ``IGNORE_INDEX`` (-100) for hits that
must not be trained, ``particle_id`` is int64 (0 = noise, -1 = padding), ``cluster`` is the
int64 locality-cluster label (-1 on padding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trackstudy.errors import ConfigError
from trackstudy.models.masks import cluster_blocks
from trackstudy.models.roads import IGNORE_INDEX


def _zero_like_graph(t: torch.Tensor) -> torch.Tensor:
    """A zero that keeps ``t`` in the autograd graph (a batch with nothing to train on)."""
    return t.sum() * 0.0


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, pad_mask: torch.Tensor | None = None,
                         *, label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over hits whose label is not IGNORE_INDEX (and, if given, pad_mask is True).

    logits (B, T, C), target (B, T) int64.
    """
    if target.dtype != torch.int64:
        raise ConfigError(f"masked_cross_entropy: class targets must be int64, got {target.dtype}")
    if pad_mask is not None:
        target = target.masked_fill(~pad_mask, IGNORE_INDEX)
    n = (target != IGNORE_INDEX).sum()
    if n == 0:
        return _zero_like_graph(logits)
    c = logits.shape[-1]
    bad = (target != IGNORE_INDEX) & ((target < 0) | (target >= c))
    if bad.any():
        raise ConfigError(f"masked_cross_entropy: class label {int(target[bad][0])} outside 0..{c - 1} "
                          "(is the head's number of classes that of the road binning?)")
    loss = F.cross_entropy(logits.reshape(-1, c).float(), target.reshape(-1), ignore_index=IGNORE_INDEX,
                           reduction="sum", label_smoothing=label_smoothing)
    return loss / n


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the hits where ``mask`` (B, T) is True, averaged over the K components.

    pred, target (B, T, K); ``weights`` (K,) optionally weights the components (mean of weights = scale).
    """
    if pred.shape != target.shape:
        raise ConfigError(f"masked_mse: prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    m = mask.to(torch.bool)
    n = m.sum()
    if n == 0:
        return _zero_like_graph(pred)
    err = (pred.float() - target.float()) ** 2  # (B, T, K)
    if weights is not None:
        err = err * weights.to(err)
    err = err.mean(-1).masked_fill(~m, 0.0)
    return err.sum() / n


def masked_bce(logits: torch.Tensor, target: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy with logits over the hits where ``pad_mask`` (B, T) is True;
    logits (B, T) float, target (B, T) bool or 0/1."""
    if logits.shape != target.shape:
        raise ConfigError(f"masked_bce: logits shape {tuple(logits.shape)} != target shape {tuple(target.shape)}")
    n = pad_mask.sum()
    if n == 0:
        return _zero_like_graph(logits)
    err = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return err.masked_fill(~pad_mask, 0.0).sum() / n


def event_cluster_labels(pad_mask: torch.Tensor, cluster: torch.Tensor | None) -> torch.Tensor:
    """(B*T,) int64 labels unique across the events of a batch; -1 on padding and unclustered hits.
    ``cluster=None`` puts each event in one cluster."""
    b, t = pad_mask.shape
    if cluster is None:
        cluster = torch.zeros(b, t, dtype=torch.int64, device=pad_mask.device)
    elif cluster.dtype != torch.int64:
        raise ConfigError(f"cluster labels must be int64, got {cluster.dtype}")
    ok = pad_mask & (cluster >= 0)
    span = int(cluster.max()) + 1 if ok.any() else 1
    ev = torch.arange(b, device=pad_mask.device)[:, None] * span
    return torch.where(ok, ev + cluster, -1).reshape(-1)


def contrastive_loss(embedding: torch.Tensor, particle_id: torch.Tensor, pt: torch.Tensor,
                     pad_mask: torch.Tensor, cluster: torch.Tensor | None = None, *,
                     temperature: float = 0.05, pt_min: float = 0.9,
                     max_block_elements: int = 1 << 24) -> tuple[torch.Tensor, dict]:
    """Multi-positive InfoNCE of the FlexAttention tracking paper, computed cluster by cluster.

    L = -1/|J| sum_{i in J} 1/|P(i)| sum_{p in P(i)} log Pr(p|i),
    Pr(p|i) = exp(sim(i,p)/T) / sum_{u in N(i)} exp(sim(i,u)/T), sim = cosine similarity.

    * N(i): the other hits of i's locality cluster (same event, same ``cluster`` label). The hit
      itself is excluded: its self-similarity is always 1/T, so including it would only add a
      constant competitor that caps how sharp Pr can get; excluding it is the SupCon convention.
      ``cluster=None`` makes every event one cluster (dense attention).
    * P(i): hits of N(i) with i's particle id (int64 comparison); noise (id 0) is never a positive.
    * J: hits of particles with pT > ``pt_min`` GeV that have at least one positive in N(i).
      Noise and low-pT hits are never anchors but are negatives for everyone in their cluster.

    embedding (B, T, D) float; particle_id (B, T) int64; pt (B, T) GeV; pad_mask (B, T) bool.
    Memory: clusters are padded to a ladder of block sizes (:func:`cluster_blocks`) and processed in chunks of at most
    ``max_block_elements`` similarity entries, so the cost is sum over clusters of size^2
    (block-diagonal), never (hits in event)^2.
    Returns (loss, {"contrastive": float, "n_anchors": int, "floor": float}). ``floor`` is the
    smallest value the loss can take on this batch, mean over anchors of log |P(i)| (reached when
    every anchor puts all its probability evenly on its positives): with several positives per
    anchor the loss never reaches 0, so training progress is loss - floor.
    """
    if particle_id.dtype != torch.int64:
        raise ConfigError(f"contrastive_loss: particle ids must be int64, got {particle_id.dtype} "
                          "(a float cast makes distinct TrackML particle ids collide)")
    if temperature <= 0:
        raise ConfigError(f"contrastive_loss: temperature must be > 0, got {temperature}")
    d = embedding.shape[-1]
    labels = event_cluster_labels(pad_mask, cluster)
    emb = F.normalize(embedding.reshape(-1, d).float(), dim=-1)  # (B*T, D)
    pid = particle_id.reshape(-1)
    anchor = (pid > 0) & (pt.reshape(-1) > pt_min)
    total = _zero_like_graph(embedding)
    n_anchors, floor = 0, 0.0
    # a lone hit has no neighbour, hence no positive: min_size=2
    for idx, valid in cluster_blocks(labels, min_size=2, max_block_elements=max_block_elements):
        s = idx.shape[1]
        eye = torch.eye(s, dtype=torch.bool, device=emb.device)
        e = emb[idx]  # (G, S, D)
        sim = torch.einsum("gid,gjd->gij", e, e) / temperature  # (G, S, S)
        key_ok = valid[:, None, :] & ~eye  # (G, S, S)
        # Padded query rows keep finite logits (ignored later) so log_softmax never sees an
        # all -inf row, whose NaN would leak into the gradient.
        sim = sim.masked_fill(~key_ok & valid[:, :, None], float("-inf"))
        logp = torch.log_softmax(sim, dim=-1)
        p = pid[idx]
        a = anchor[idx] & valid
        pos = (p[:, :, None] == p[:, None, :]) & key_ok & a[:, :, None]
        n_pos = pos.sum(-1)  # (G, S)
        sum_lp = logp.masked_fill(~pos, 0.0).sum(-1)
        use = n_pos > 0
        if use.any():
            total = total - (sum_lp[use] / n_pos[use]).sum()
            n_anchors += int(use.sum())
            floor += float(torch.log(n_pos[use].double()).sum())
    loss = total / max(n_anchors, 1)
    return loss, {"contrastive": float(loss.detach()), "n_anchors": n_anchors, "floor": floor / max(n_anchors, 1)}


def joint_loss(reg_loss: torch.Tensor, cla_loss: torch.Tensor, alpha: float = 1.0, beta: float = 0.3) -> torch.Tensor:
    """alpha * L_reg + beta * L_cla (the joint model of TrackFormers part 2: alpha = 1, beta = 0.3)."""
    return alpha * reg_loss + beta * cla_loss


__all__ = ["contrastive_loss", "event_cluster_labels", "joint_loss", "masked_bce",
           "masked_cross_entropy",
           "masked_mse"]
