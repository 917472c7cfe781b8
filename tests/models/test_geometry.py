"""The geometric attention bias: the beam-line residual of hit pairs, worked out by hand, and the
same function in every exact backend."""

import math

import numpy as np
import pytest
import torch

from trackstudy.errors import ConfigError, DataError
from trackstudy.models.attention import AttentionContext, attend
from trackstudy.models.encoder import Encoder, EncoderConfig
from trackstudy.models.features import FeatureConfig, feature_array, radius_z
from trackstudy.models.geometry import (
    GEO_SCALE_MM2,
    GeometricBias,
    geometry_from_features,
    pair_residual,
    pair_vectors,
)
from trackstudy.models.heads import build_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_residual_of_a_track_from_z0_is_z0_times_lever_arm():
    # one track from z0 = 5 mm with cot(theta) = 0.5: z = 5 + 0.5 r at r = 30, 70, 120 mm
    r = torch.tensor([[30.0, 70.0, 120.0, 70.0]])
    z = 5.0 + 0.5 * r
    z[0, 3] = 0.5 * 70.0 + 45.0  # a hit 40 mm off the track's line at r = 70: implied z0 of (0, 3) is 5 + 40 * 30 / 40
    g = geometry_from_features(r, z, torch.ones(1, 4, dtype=torch.bool))
    res = pair_residual(g)[0]
    # (z_i r_j - z_j r_i)^2 = (z0 (r_j - r_i))^2: (5 * 40)^2, (5 * 90)^2, (5 * 50)^2, over S^2
    assert res[0, 1].item() == pytest.approx((5 * 40 / GEO_SCALE_MM2) ** 2, rel=1e-4)
    assert res[0, 2].item() == pytest.approx((5 * 90 / GEO_SCALE_MM2) ** 2, rel=1e-4)
    assert res[1, 2].item() == pytest.approx((5 * 50 / GEO_SCALE_MM2) ** 2, rel=1e-4)
    # hit 3: z0 implied with hit 0 = (z_0 r_3 - z_3 r_0) / (r_3 - r_0) = (20 * 70 - 80 * 30) / 40 = -25 mm
    assert res[0, 3].item() == pytest.approx((25 * 40 / GEO_SCALE_MM2) ** 2, rel=1e-4)
    assert torch.allclose(res, res.T) and torch.all(res.diagonal() < 1e-9)


def test_pair_vectors_give_the_residual_and_the_cluster_line_cancels():
    g0 = torch.Generator().manual_seed(0)
    r = 30 + 140 * torch.rand(2, 50, generator=g0)
    z = 300 * torch.randn(2, 50, generator=g0)
    pad = torch.ones(2, 50, dtype=torch.bool)
    pad[1, 40:] = False
    labels = torch.randint(0, 3, (2, 50), generator=g0)
    for lab in (None, labels):
        g = geometry_from_features(r, z, pad, lab)
        a, b = pair_vectors(g)
        direct = ((z[:, :, None] * r[:, None, :] - z[:, None, :] * r[:, :, None]) / GEO_SCALE_MM2) ** 2
        for bi, n in ((0, 50), (1, 40)):
            same = torch.ones(n, n, dtype=torch.bool) if lab is None else lab[bi, :n, None] == lab[bi, None, :n]
            got = (a[bi, :n] @ b[bi, :n].T)[same]
            torch.testing.assert_close(got, direct[bi, :n, :n][same], rtol=1e-4, atol=1e-2)  # terms up to ~2e4: float32
    assert torch.all(g[1, 40:] == 0)  # padding rows are zero


def test_geometry_rejects_mismatched_shapes():
    with pytest.raises(DataError, match="share a"):
        geometry_from_features(torch.ones(1, 3), torch.ones(1, 4), torch.ones(1, 3, dtype=torch.bool))


def test_augmented_attention_is_attention_with_the_bias():
    g0 = torch.Generator().manual_seed(1)
    B, H, T, hs = 1, 2, 12, 8
    q, k, v = (torch.randn(B, H, T, hs, generator=g0) for _ in range(3))
    geo = torch.stack([30 + 140 * torch.rand(B, T, generator=g0), 20 * torch.randn(B, T, generator=g0)], -1)
    bias = GeometricBias(H, hs, init_strength=0.3)
    a, b = pair_vectors(geo)
    q2, k2, v2 = bias.augment(q, k, v, a, b)
    assert q2.shape[-1] % 8 == 0 and q2.shape[-1] >= hs + 3
    ctx = AttentionContext(batch_size=B, seq_len=T)
    out, _ = attend(q2, k2, v2, ctx, "dense")
    scores = q @ k.transpose(-1, -2) / math.sqrt(hs) - 0.3 * pair_residual(geo)[:, None]
    want = torch.softmax(scores, -1) @ v
    torch.testing.assert_close(out[..., :hs], want, atol=1e-5, rtol=1e-5)
    assert torch.all(out[..., hs:] == 0)
    assert bias.strength.detach().numpy() == pytest.approx([0.3, 0.3], rel=1e-5)
    with pytest.raises(ConfigError, match="init_strength"):
        GeometricBias(H, hs, init_strength=0.0)


def _events(n_hits=(90, 60), seed=0):
    rng = np.random.default_rng(seed)
    xs, labs = [], []
    cfg = FeatureConfig(names=("x", "y", "z", "r", "sin_phi", "cos_phi", "eta"))
    for n in n_hits:
        r = rng.uniform(30, 170, n)
        ph = rng.uniform(-0.3, 0.3, n)
        z = rng.normal(0, 200, n)
        xs.append(torch.from_numpy(feature_array(r * np.cos(ph), r * np.sin(ph), z, cfg)))
        labs.append(torch.from_numpy(rng.integers(0, 5, n)))
    ctx = AttentionContext.from_events(labs, compile_block_mask=False)
    x = torch.zeros(len(n_hits), ctx.seq_len, cfg.n_features)
    for i, t in enumerate(xs):
        x[i, : len(t)] = t
    return x, ctx, cfg


def test_model_with_geo_bias_is_the_same_function_in_every_exact_backend():
    x, ctx, cfg = _events()
    torch.manual_seed(0)
    model = build_model("contrastive", "tiny", feature_cfg=cfg, encoder_overrides={"geo_bias": True},
                        embed_dim=8).eval()
    outs = {}
    with torch.no_grad():
        for backend in ("dense", "packed", "explicit", "flex"):
            c = AttentionContext(ctx.pad_mask, ctx.cluster_labels, compile_block_mask=False)
            outs[backend] = model(x, c, backend=backend)["embedding"][ctx.pad_mask]
    for backend in ("packed", "explicit", "flex"):
        torch.testing.assert_close(outs[backend], outs["dense"], atol=2e-5, rtol=0)
    # the bias changes the function, and its strengths get gradients in training
    plain = build_model("contrastive", "tiny", feature_cfg=cfg, embed_dim=8)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in plain.parameters()) + 2 * 2
    model.train()
    c = AttentionContext(ctx.pad_mask, ctx.cluster_labels)
    model(x, c, backend="packed")["embedding"].square().sum().backward()
    grads = [blk.attn.geo.raw_strength.grad for blk in model.encoder.blocks]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_a_cluster_alone_gets_its_outputs_inside_the_event():
    x, ctx, cfg = _events(n_hits=(80,))
    torch.manual_seed(0)
    model = build_model("contrastive", "tiny", feature_cfg=cfg, encoder_overrides={"geo_bias": True},
                        embed_dim=8).eval()
    with torch.no_grad():
        full = model(x, AttentionContext(ctx.pad_mask, ctx.cluster_labels), backend="packed")["embedding"][0]
        sel = ctx.cluster_labels[0] == 2
        alone = model(x[:, sel], AttentionContext(batch_size=1, seq_len=int(sel.sum())), backend="dense")["embedding"][0]
    torch.testing.assert_close(alone, full[sel], atol=2e-5, rtol=0)


def test_geo_bias_needs_r_and_z_features_and_a_hit_token_family():
    with pytest.raises(ConfigError, match="must hold 'z'"):
        build_model("contrastive", "tiny", feature_cfg=FeatureConfig(names=("x", "y", "eta")),
                    encoder_overrides={"geo_bias": True})
    cfg = FeatureConfig(names=("x", "y", "z"))
    r, z = radius_z(torch.tensor([[0.3, 0.4, 0.1]]), cfg)
    assert r.item() == pytest.approx(0.5 * cfg.xy_scale) and z.item() == pytest.approx(0.1 * cfg.z_scale)
    enc = Encoder(EncoderConfig.preset("tiny", n_features=3, geo_bias=True))
    with pytest.raises(ConfigError, match="no hit geometry"):
        enc(torch.zeros(1, 4, 3))
    with pytest.raises(DataError, match="geometry has shape"):
        AttentionContext(batch_size=1, seq_len=4).set_geometry(torch.zeros(1, 3, 2))


def test_onnx_export_refuses_a_geo_bias_model():
    from trackstudy.models.export import ExportModel

    cfg = FeatureConfig(names=("x", "y", "z"))
    model = build_model("contrastive", "tiny", feature_cfg=cfg, encoder_overrides={"geo_bias": True})
    with pytest.raises(ConfigError, match="geo_bias"):
        ExportModel(model)


def test_run_config_refuses_geo_bias_outside_the_hit_token_families():
    from trackstudy.training.run_config import resolve_config

    with pytest.raises(ConfigError, match="geo_bias: an option of the hit-token families"):
        resolve_config({"model": {"family": "gnn", "encoder": {"geo_bias": True}}})
