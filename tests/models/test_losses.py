import math

import pytest
import torch
import torch.nn.functional as F

from trackstudy.errors import ConfigError
from trackstudy.models.losses import contrastive_loss, joint_loss, masked_cross_entropy, masked_mse
from trackstudy.models.roads import IGNORE_INDEX


def dense_reference(embedding, particle_id, pt, pad_mask, cluster=None, *, temperature=0.05, pt_min=0.9):
    """Naive loop over anchors with a full (T, T) similarity matrix per event."""
    b, t, _ = embedding.shape
    if cluster is None:
        cluster = torch.where(pad_mask, 0, -1)
    e = F.normalize(embedding.double(), dim=-1)
    terms = []
    for k in range(b):
        sim = e[k] @ e[k].T / temperature
        for i in range(t):
            if not (pad_mask[k, i] and particle_id[k, i] > 0 and pt[k, i] > pt_min and cluster[k, i] >= 0):
                continue
            nb = pad_mask[k] & (cluster[k] == cluster[k, i])
            nb[i] = False
            pos = nb & (particle_id[k] == particle_id[k, i])
            if pos.sum() == 0:
                continue
            lse = torch.logsumexp(sim[i][nb], 0)
            terms.append(-(sim[i][pos] - lse).mean())
    return torch.stack(terms).mean()


def _four_hits():
    emb = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]], requires_grad=True)
    pid = torch.tensor([[7, 7, 9, 0]], dtype=torch.int64)
    pt = torch.ones(1, 4)
    mask = torch.ones(1, 4, dtype=torch.bool)
    return emb, pid, pt, mask


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_contrastive_hand_computed(temperature):
    # anchors: hits 0 and 1 (hit 2 has no partner, hit 3 is noise). For hit 0 the neighbours are
    # hits 1, 2, 3 with cosine 1, 0, -1, the only positive is hit 1:
    # L = -log(e^{1/T} / (e^{1/T} + 1 + e^{-1/T})), the same for hit 1.
    emb, pid, pt, mask = _four_hits()
    loss, parts = contrastive_loss(emb, pid, pt, mask, temperature=temperature)
    a = 1 / temperature
    expected = math.log(math.exp(a) + 1 + math.exp(-a)) - a
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert parts["n_anchors"] == 2
    assert parts["floor"] == 0.0  # one positive per anchor: log 1
    assert dense_reference(emb, pid, pt, mask, temperature=temperature).item() == pytest.approx(expected, rel=1e-9)


def test_contrastive_low_pt_and_noise_are_not_anchors():
    emb, pid, pt, mask = _four_hits()
    pt = torch.tensor([[0.5, 0.5, 2.0, 2.0]])
    loss, parts = contrastive_loss(emb, pid, pt, mask)
    assert parts["n_anchors"] == 0 and loss.item() == 0.0
    loss.backward()  # still differentiable: a batch with nothing to learn gives a zero gradient
    assert torch.count_nonzero(emb.grad) == 0


def test_contrastive_clusters_separate_neighbourhoods():
    # the positive pair is split across two locality clusters: nothing to learn
    emb, pid, pt, mask = _four_hits()
    cluster = torch.tensor([[0, 1, 1, 1]])
    _, parts = contrastive_loss(emb, pid, pt, mask, cluster)
    assert parts["n_anchors"] == 0
    # same cluster for hits 0, 1, 3: hit 2 (cosine 0) is no longer a competitor
    cluster = torch.tensor([[0, 0, 1, 0]])
    loss, _ = contrastive_loss(emb, pid, pt, mask, cluster, temperature=1.0)
    assert loss.item() == pytest.approx(math.log(math.e + math.exp(-1)) - 1, rel=1e-6)


@pytest.mark.parametrize("max_block", [1 << 24, 16])
def test_contrastive_matches_dense_reference(max_block):
    g = torch.Generator().manual_seed(0)
    b, t, d = 3, 40, 8
    emb = torch.randn(b, t, d, generator=g, dtype=torch.float64).float().requires_grad_(True)
    pid = torch.randint(0, 6, (b, t), generator=g) * (1 << 40)  # large int64 ids, 0 = noise
    pt = torch.rand(b, t, generator=g) * 2
    lengths = [40, 25, 7]
    mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
    cluster = torch.randint(0, 4, (b, t), generator=g)
    cluster[0, :3] = -1  # unclustered real hits: no neighbours
    cluster = cluster.masked_fill(~mask, -1)
    loss, parts = contrastive_loss(emb, pid, pt, mask, cluster, temperature=0.1, max_block_elements=max_block)
    ref = dense_reference(emb, pid, pt, mask, cluster, temperature=0.1)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert 0 < parts["floor"] < loss.item()
    (g1,) = torch.autograd.grad(loss, emb)
    (g2,) = torch.autograd.grad(ref, emb)
    torch.testing.assert_close(g1, g2.float(), rtol=1e-4, atol=1e-6)
    assert torch.isfinite(g1).all()
    # padding with garbage embeddings changes nothing
    emb2 = emb.detach().clone()
    emb2[~mask] = 1e3 * torch.randn(int((~mask).sum()), d, generator=g)
    loss2, _ = contrastive_loss(emb2, pid, pt, mask, cluster, temperature=0.1)
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-6)


def test_contrastive_rejects_float_ids():
    emb, pid, pt, mask = _four_hits()
    with pytest.raises(ConfigError, match="int64"):
        contrastive_loss(emb, pid.float(), pt, mask)


def test_masked_cross_entropy_ignores_padding_and_ignore_index():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0], [5.0, -5.0]]])
    target = torch.tensor([[0, IGNORE_INDEX, 1]])
    mask = torch.tensor([[True, True, False]])
    loss = masked_cross_entropy(logits, target, mask)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-6)
    with pytest.raises(ConfigError, match="outside"):
        masked_cross_entropy(logits, torch.tensor([[0, 2, 1]]))
    assert masked_cross_entropy(logits, torch.full((1, 3), IGNORE_INDEX)).item() == 0.0


def test_masked_mse_hand_value():
    pred = torch.tensor([[[1.0, 1.0], [3.0, 0.0], [100.0, 100.0]]])
    target = torch.zeros(1, 3, 2)
    mask = torch.tensor([[True, True, False]])
    # per-hit means 1 and 4.5 -> 2.75
    assert masked_mse(pred, target, mask).item() == pytest.approx(2.75)
    assert masked_mse(pred, target, mask, torch.tensor([2.0, 0.0])).item() == pytest.approx((2 / 2 + 18 / 2) / 2)


def test_joint_loss_default_weights():
    assert joint_loss(torch.tensor(2.0), torch.tensor(10.0)).item() == pytest.approx(5.0)


def test_contrastive_floor_is_reached_by_a_perfect_cluster():
    # one cluster holding one particle's three hits: each anchor has two equally likely positives
    emb = torch.ones(1, 3, 4)
    loss, parts = contrastive_loss(emb, torch.full((1, 3), 11, dtype=torch.int64), torch.ones(1, 3),
                                   torch.ones(1, 3, dtype=torch.bool))
    assert loss.item() == pytest.approx(math.log(2)) and parts["floor"] == pytest.approx(math.log(2))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_contrastive_cuda_matches_cpu():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(2, 50, 8, generator=g)
    pid = torch.randint(0, 5, (2, 50), generator=g)
    pt = torch.rand(2, 50, generator=g) * 2
    mask = torch.ones(2, 50, dtype=torch.bool)
    cluster = torch.randint(0, 3, (2, 50), generator=g)
    a, _ = contrastive_loss(emb, pid, pt, mask, cluster)
    b, _ = contrastive_loss(emb.cuda(), pid.cuda(), pt.cuda(), mask.cuda(), cluster.cuda())
    assert b.item() == pytest.approx(a.item(), rel=1e-5)
