"""Every attention backend against dense SDPA with the cluster mask (hepattn-style consistency)."""

import math

import pytest
import torch

from trackstudy.errors import ConfigError, DataError
from trackstudy.models import masks
from trackstudy.models.attention import BACKENDS, AttentionContext, attend
from trackstudy.models.lsh import LSHConfig, lsh_buckets, lsh_pair_fraction, lsh_plan, lsh_projections

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LENGTHS = (150, 97, 40)
H, HS = 2, 8


def _batch(seed=0, lengths=LENGTHS, labels=True, **ctx_kwargs):
    g = torch.Generator().manual_seed(seed)
    lab = [torch.randint(0, 12, (n,), generator=g) for n in lengths]
    eta = [torch.randn(n, generator=g) for n in lengths]
    phi = [(torch.rand(n, generator=g) * 2 - 1) * math.pi for n in lengths]
    ctx_kwargs.setdefault("compile_block_mask", False)
    ctx = AttentionContext.from_events(lab, eta, phi, **ctx_kwargs)
    if not labels:
        ctx = AttentionContext(ctx.pad_mask, None, ctx.eta, ctx.phi)
    B, T = ctx.pad_mask.shape
    q, k, v = (torch.randn(B, H, T, HS, generator=g).to(ctx.pad_mask.device) for _ in range(3))
    # padding rows hold garbage: it must not matter
    q, k, v = (t.masked_fill(~ctx.pad_mask[:, None, :, None], 1e3) for t in (q, k, v))
    return q, k, v, ctx


def _real(t, ctx):
    return t.transpose(1, 2)[ctx.pad_mask]  # (N_real, H, hs)


def _outputs_and_grads(backend, q, k, v, ctx, **kw):
    q, k, v = (t.clone().requires_grad_(True) for t in (q, k, v))
    out, _ = attend(q, k, v, ctx, backend, **kw)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(9)).to(out.device)
    ((out * w).masked_fill(~ctx.pad_mask[:, None, :, None], 0).sum()).backward()
    return out, (q.grad, k.grad, v.grad)


def test_dense_reference_matches_hand_written_softmax():
    q, k, v, ctx = _batch()
    out, _ = attend(q, k, v, ctx, "dense")
    mask = masks.cluster_mask(ctx.cluster_labels, ctx.pad_mask)
    b, i = 1, 5
    allowed = mask[b, i]
    s = torch.einsum("hd,htd->ht", q[b, :, i], k[b]) / math.sqrt(HS)  # (H, T)
    s = s.masked_fill(~allowed, float("-inf"))
    want = torch.einsum("ht,htd->hd", torch.softmax(s, -1), v[b])
    torch.testing.assert_close(out[b, :, i], want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("labels", [True, False])
@pytest.mark.parametrize("backend", ["explicit", "packed"])
def test_exact_backends_equal_dense_forward_and_gradients(backend, labels):
    q, k, v, ctx = _batch(labels=labels)
    ref, ref_grads = _outputs_and_grads("dense", q, k, v, ctx)
    out, grads = _outputs_and_grads(backend, q, k, v, ctx)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(_real(out, ctx), _real(ref, ctx), atol=1e-5, rtol=0)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(_real(g, ctx), _real(rg, ctx), atol=1e-5, rtol=0)


def test_flex_equals_dense_forward_on_cpu():
    q, k, v, ctx = _batch()
    ref, _ = attend(q, k, v, ctx, "dense")
    with torch.no_grad():
        out, _ = attend(q, k, v, ctx, "flex")
    assert torch.isfinite(out).all()
    torch.testing.assert_close(_real(out, ctx), _real(ref, ctx), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_flex_with_compiled_block_mask_equals_dense():
    q, k, v, ctx = _batch(seed=4, lengths=(300, 129))
    ctx.compile_block_mask = True
    ref, _ = attend(q, k, v, ctx, "dense")
    with torch.no_grad():
        out, _ = attend(q, k, v, ctx, "flex")
    torch.testing.assert_close(_real(out, ctx), _real(ref, ctx), atol=1e-5, rtol=0)


def test_flex_refuses_cpu_backward():
    q, k, v, ctx = _batch()
    with pytest.raises(ConfigError, match="no CPU backward.*packed"):
        attend(q.requires_grad_(True), k, v, ctx, "flex")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_flex_gradients_equal_dense_on_cuda():
    q, k, v, ctx = _batch(compile_block_mask=True, device="cuda")
    ref, ref_grads = _outputs_and_grads("dense", q, k, v, ctx)
    out, grads = _outputs_and_grads("flex", q, k, v, ctx)
    torch.testing.assert_close(_real(out, ctx), _real(ref, ctx), atol=1e-5, rtol=0)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(_real(g, ctx), _real(rg, ctx), atol=1e-5, rtol=0)


def test_lsh_with_one_bucket_equals_dense_forward_and_gradients():
    q, k, v, ctx = _batch(labels=False)
    one_bucket = LSHConfig(n_rounds=3, bucket_width=1e6, block_size=256)
    assert bool((ctx.lsh_plan(one_bucket).sorted_ids.amax(-1) == 0).all())
    assert lsh_pair_fraction(ctx.lsh_plan(one_bucket), ctx.pad_mask) == 1.0
    small = ctx.lsh_plan(LSHConfig(bucket_width=0.3, block_size=16))
    assert 0 < lsh_pair_fraction(small, ctx.pad_mask) < 0.5
    ref, ref_grads = _outputs_and_grads("dense", q, k, v, ctx)
    out, grads = _outputs_and_grads("lsh", q, k, v, ctx, lsh=one_bucket)
    torch.testing.assert_close(_real(out, ctx), _real(ref, ctx), atol=1e-5, rtol=0)
    for g, rg in zip(grads, ref_grads):
        torch.testing.assert_close(_real(g, ctx), _real(rg, ctx), atol=1e-5, rtol=0)


def test_lsh_attends_only_within_shared_buckets():
    q, k, v, ctx = _batch(labels=False)
    cfg = LSHConfig(n_rounds=2, n_projections=2, bucket_width=0.5, block_size=16, seed=3)
    plan = ctx.lsh_plan(cfg)
    B, T = ctx.pad_mask.shape
    # which key positions each query can see in some round
    seen = torch.zeros(B, T, T, dtype=torch.bool)
    for r in range(plan.n_rounds):
        ids = plan.sorted_ids[r].view(B, -1, cfg.block_size)
        pos = plan.perm[r].view(B, -1, cfg.block_size)
        pair = (ids[..., :, None] == ids[..., None, :]) & (ids[..., :, None] >= 0)
        b, blk, i, j = pair.nonzero(as_tuple=True)
        seen[b, pos[b, blk, i], pos[b, blk, j]] = True
    b, i = 0, 7
    unseen = (~seen[b, i] & ctx.pad_mask[b]).nonzero().squeeze(1)
    assert 0 < unseen.numel() < T - 1 and seen[b, i].sum() >= 2
    out, _ = attend(q, k, v, ctx, "lsh", lsh=cfg)
    v2 = v.clone()
    v2[b, :, unseen] += 100.0
    out2, _ = attend(q, k, v2, ctx, "lsh", lsh=cfg)
    torch.testing.assert_close(out2[b, :, i], out[b, :, i], atol=1e-5, rtol=0)
    v3 = v.clone()
    v3[b, :, seen[b, i].nonzero().squeeze(1)] += 100.0
    out3, _ = attend(q, k, v3, ctx, "lsh", lsh=cfg)
    torch.testing.assert_close(out3[b, :, i], out[b, :, i] + 100.0, atol=1e-3, rtol=0)


def test_lsh_hash_is_seeded_periodic_in_phi_and_separates_far_hits():
    a1, b1 = lsh_projections(LSHConfig(seed=5))
    a2, b2 = lsh_projections(LSHConfig(seed=5))
    assert (a1 == a2).all() and (b1 == b2).all() and a1.shape == (3, 2, 3)
    cfg = LSHConfig(n_rounds=4, bucket_width=0.2, seed=1)
    # hits 0/1 straddle phi = +-pi (Delta phi = 0.002); hit 2 is far away in eta
    eta = torch.tensor([[0.5, 0.5, 3.5]])
    phi = torch.tensor([[math.pi - 0.001, -math.pi + 0.001, 0.0]])
    ids, _ = lsh_buckets(eta, phi, torch.ones(1, 3, dtype=torch.bool), cfg)
    assert (ids[:, 0, 0] == ids[:, 0, 1]).sum() >= 3
    assert (ids[:, 0, 0] != ids[:, 0, 2]).all()
    ids_pad, _ = lsh_buckets(eta, phi, torch.tensor([[True, True, False]]), cfg)
    assert (ids_pad[:, 0, 2] == -1).all()


def test_lsh_plan_sorts_buckets_contiguously_with_padding_last():
    _, _, _, ctx = _batch(labels=False)
    plan = lsh_plan(ctx.eta, ctx.phi, ctx.pad_mask, LSHConfig(block_size=64))
    assert plan.perm.shape[-1] % 64 == 0
    for r in range(plan.n_rounds):
        for b in range(ctx.batch_size):
            s = plan.sorted_ids[r, b]
            n = int(ctx.pad_mask[b].sum())
            assert (s[:n][1:] >= s[:n][:-1]).all() and (s[n:] == -1).all()
            assert sorted(plan.perm[r, b].tolist()) == list(range(plan.perm.shape[-1]))


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b != "flex"])
def test_padding_never_changes_real_outputs(backend):
    """The same events alone and in a padded batch with garbage padding give the same outputs."""
    q, k, v, ctx = _batch()
    out, _ = attend(q, k, v, ctx, backend)
    assert torch.isfinite(out).all()
    for b, n in enumerate(LENGTHS):
        sub = AttentionContext(ctx.pad_mask[b:b + 1, :n], ctx.cluster_labels[b:b + 1, :n],
                               ctx.eta[b:b + 1, :n], ctx.phi[b:b + 1, :n])
        alone, _ = attend(q[b:b + 1, :, :n], k[b:b + 1, :, :n], v[b:b + 1, :, :n], sub, backend)
        torch.testing.assert_close(out[b:b + 1, :, :n], alone, atol=1e-5, rtol=0)


def test_explicit_returns_normalised_masked_weights():
    q, k, v, ctx = _batch()
    out, w = attend(q, k, v, ctx, "packed", need_weights=True)
    B, T = ctx.pad_mask.shape
    assert w.shape == (B, H, T, T)
    torch.testing.assert_close(w.sum(-1), torch.ones(B, H, T))
    mask = masks.cluster_mask(ctx.cluster_labels, ctx.pad_mask)[:, None]
    assert (w.masked_select(~mask) == 0).all()
    torch.testing.assert_close(out, w @ v)


def test_context_caches_metadata_between_layers():
    _, _, _, ctx = _batch()
    assert ctx.packing() is ctx.packing()
    assert ctx.dense_mask() is ctx.dense_mask()
    assert ctx.lsh_plan(LSHConfig()) is ctx.lsh_plan(LSHConfig())
    assert ctx.block_mask() is ctx.block_mask()


def test_bad_inputs_give_clear_errors():
    q, k, v, ctx = _batch()
    with pytest.raises(ConfigError, match="unknown; choose from dense, flex"):
        attend(q, k, v, ctx, "flash")
    with pytest.raises(ConfigError, match="only available from the exact backends"):
        attend(q, k, v, ctx, "lsh", need_weights=True)
    with pytest.raises(DataError, match="context was built"):
        attend(q[:, :, :10], k[:, :, :10], v[:, :, :10], ctx, "dense")
    no_coords = AttentionContext(ctx.pad_mask, ctx.cluster_labels)
    with pytest.raises(ConfigError, match="needs eta and phi"):
        attend(q, k, v, no_coords, "lsh")
    pad = ctx.pad_mask.clone()
    pad[2] = False
    with pytest.raises(DataError, match="event 2 of the batch has no real hits"):
        AttentionContext(pad, ctx.cluster_labels)
    with pytest.raises(DataError, match="eta has shape"):
        AttentionContext(ctx.pad_mask, eta=torch.zeros(3, 5))
    with pytest.raises(ConfigError, match="give pad_mask"):
        AttentionContext()
    with pytest.raises(ConfigError, match="bucket_width"):
        LSHConfig(bucket_width=0)
