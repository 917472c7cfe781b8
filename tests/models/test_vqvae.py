"""trackstudy.models.vqvae: codebook measures by hand, k-means start, EMA update, dead-code
restarts, the straight-through gradient, errors in detector units; the doublet tokenizer's units
by hand, its training and its config."""

import math

import numpy as np
import pytest
import torch

from trackstudy.errors import ConfigError, DataError
from trackstudy.graphs.doublets import edge_features, hit_geometry, node_features
from trackstudy.models.doublet import TOKEN_FEATURES
from trackstudy.models.features import FeatureConfig
from trackstudy.models.vqvae import (
    DoubletTokenizer,
    HitTokenizer,
    VectorQuantizer,
    VQConfig,
    codebook_stats,
    detector_units,
    doublet_detector_units,
    doublet_reconstruction_errors,
    make_tokenizer,
    reconstruction_errors,
    tokenizer_from_config,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_codebook_stats_by_hand():
    # codes 0, 0, 1, 3 of a codebook of 4: used {0, 1, 3}, p = (1/2, 1/4, 1/4)
    s = codebook_stats([0, 0, 1, 3], 4)
    assert (s["used"], s["dead"], s["usage"], s["n_hits"]) == (3, 1, 0.75, 4)
    assert s["perplexity"] == pytest.approx(math.exp(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))))
    assert codebook_stats(np.arange(8), 8)["perplexity"] == pytest.approx(8.0)
    with pytest.raises(DataError, match="no codes"):
        codebook_stats([], 4)


def test_detector_units_and_errors_by_hand():
    cfg = FeatureConfig(names=("x", "y", "z", "sin_phi", "cos_phi"), xy_scale=100.0, z_scale=1000.0)
    true = np.array([[1.0, 0.0, 0.5, 0.0, 1.0]])  # x = 100 mm, y = 0, z = 500 mm, phi = 0
    dec = np.array([[1.0, 0.03, 0.502, 0.0, -1.0]])  # y = 3 mm, z = 502 mm, phi = pi
    u = detector_units(true, cfg)
    assert u["x"][0] == pytest.approx(100.0) and u["z"][0] == pytest.approx(500.0) and u["r"][0] == pytest.approx(100.0)
    err = reconstruction_errors(true, dec, cfg)
    assert err["y_mm"] == pytest.approx(3.0) and err["z_mm"] == pytest.approx(2.0) and err["x_mm"] == 0.0
    assert err["phi_rad"] == pytest.approx(math.pi)
    assert err["xyz_mm"] == pytest.approx(math.hypot(3.0, 2.0))
    # phi wraps: -3.1 vs 3.1 rad is 0.083 rad apart, not 6.2
    cfg2 = FeatureConfig(names=("phi", "z"))
    e2 = reconstruction_errors(np.array([[-3.1 / np.pi, 0.0]]), np.array([[3.1 / np.pi, 0.0]]), cfg2)
    assert e2["phi_rad"] == pytest.approx(2 * np.pi - 6.2)


def test_kmeans_init_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    z = torch.cat([c + 0.1 * torch.randn(200, 2, generator=g) for c in centres])
    vq = VectorQuantizer(VQConfig(codebook_size=3, code_dim=2, kmeans_iters=20))
    vq.kmeans_init(z, torch.Generator().manual_seed(1))
    found = vq.codebook[torch.cdist(centres, vq.codebook).argmin(1)]
    assert bool(vq.initialised)
    assert torch.cdist(centres, found).diag().max() < 0.1
    codes = vq.nearest(z)
    assert len(codes.unique()) == 3


def test_ema_update_moves_codes_to_their_means_and_restarts_dead_ones():
    cfg = VQConfig(codebook_size=2, code_dim=1, ema_decay=0.5, dead_after=2, kmeans_init=False)
    vq = VectorQuantizer(cfg).train()
    vq.codebook.copy_(torch.tensor([[0.0], [100.0]]))
    vq.ema_sum.copy_(vq.codebook)
    z = torch.tensor([[1.0], [3.0]])  # both nearest to code 0, mean 2
    vq(z)
    # ema_count[0] = 0.5 * 1 + 0.5 * 2 = 1.5, ema_sum[0] = 0.5 * 0 + 0.5 * 4 = 2; smoothed count ~1.5
    assert vq.codebook[0, 0].item() == pytest.approx(2.0 / 1.5, rel=1e-3)
    assert vq.unused_steps.tolist() == [0, 1]
    vq(z)  # code 1 unused for 2 steps: restarted onto one of the batch vectors
    assert vq.codebook[1, 0].item() in (1.0, 3.0) and vq.unused_steps[1] == 0


def test_straight_through_gradient_and_commitment():
    vq = VectorQuantizer(VQConfig(codebook_size=4, code_dim=3, ema_decay=0.0)).eval()
    z = torch.randn(5, 3, requires_grad=True)
    q, codes, commit = vq(z)
    torch.testing.assert_close(q, vq.codebook[codes])
    q.sum().backward()
    torch.testing.assert_close(z.grad, torch.ones_like(z))  # identity through the quantiser
    assert commit.item() == pytest.approx(((z - vq.codebook[codes]) ** 2).mean().item())


def test_tokenizer_learns_and_uses_its_codebook():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 7)
    tok = HitTokenizer(VQConfig(codebook_size=32, hidden=32))
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        out = tok(x[torch.randint(len(x), (512,), generator=g)], g)
        first = first if first is not None else out["mse"]
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    tok.eval()
    codes = tok.encode(x)
    assert codes.shape == (2000,) and codes.dtype == torch.int64
    assert codebook_stats(codes.numpy(), 32)["used"] >= 24  # k-means start and restarts keep codes alive
    assert tok.decode(codes).shape == (2000, 7)
    assert float(((tok.decode(codes) - x) ** 2).mean()) < first
    assert tok.encode(x.reshape(40, 50, 7)).shape == (40, 50)


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="tokenizer.codebook_size"):
        VQConfig(codebook_size=0)
    with pytest.raises(ConfigError, match="tokenizer.ema_decay"):
        VQConfig(ema_decay=1.0)
    with pytest.raises(ConfigError, match="n_features=3"):
        HitTokenizer(VQConfig(n_features=3))
    with pytest.raises(DataError, match=r"shape \(N, 7\)"):
        HitTokenizer(VQConfig())(torch.zeros(4, 5))
    with pytest.raises(ConfigError, match="unknown field 'size'"):
        VQConfig.from_dict({"size": 3})
    tok = HitTokenizer(VQConfig(codebook_size=8))
    again = HitTokenizer.from_config(tok.config_dict())
    assert again.config == tok.config and again.feature_cfg == tok.feature_cfg


def _doublet_tokens():
    """Token features (2, 20) of two doublets of hand-placed hits (layers from the pixel geometry)."""
    import pandas as pd

    hits = pd.DataFrame({"x": [32.0, 72.0, 0.0, 0.0], "y": [0.0, 3.0, 40.0, 80.0], "z": [10.0, 30.0, -50.0, -110.0],
                         "volume_id": [8, 8, 8, 8], "layer_id": [2, 4, 2, 4]})
    g = hit_geometry(hits)
    src, dst = np.array([0, 2]), np.array([1, 3])
    x = node_features(g)
    return np.concatenate([x[src], x[dst], edge_features(g, src, dst)], axis=1), g


def test_doublet_detector_units_by_hand():
    tokens, g = _doublet_tokens()
    assert tokens.shape == (2, len(TOKEN_FEATURES))
    u = doublet_detector_units(tokens)
    np.testing.assert_allclose(u["r_in"], [32.0, 40.0], rtol=1e-6)
    np.testing.assert_allclose(u["r_out"], [math.hypot(72.0, 3.0), 80.0], rtol=1e-6)
    np.testing.assert_allclose(u["z_out"], [30.0, -110.0], rtol=1e-6)
    np.testing.assert_allclose(u["phi_in"], [0.0, math.pi / 2], atol=1e-6)
    np.testing.assert_allclose(u["dphi"], [math.atan2(3.0, 72.0), 0.0], atol=1e-6)
    np.testing.assert_allclose(u["dz"], [20.0, -60.0], rtol=1e-5)
    np.testing.assert_allclose(u["dr"], [math.hypot(72.0, 3.0) - 32.0, 40.0], rtol=1e-5)
    np.testing.assert_allclose(u["z0"], [10.0 - 32.0 * 20.0 / (math.hypot(72.0, 3.0) - 32.0), 10.0], rtol=1e-4)
    np.testing.assert_allclose(u["layer_in"], g["layer"][[0, 2]], atol=1e-5)
    np.testing.assert_allclose(u["x_out"], [72.0, 0.0], atol=1e-4)
    with pytest.raises(DataError, match=r"expected shape \(E, 20\)"):
        doublet_detector_units(np.zeros((2, 7)))


def test_doublet_reconstruction_errors_by_hand():
    tokens, _ = _doublet_tokens()
    dec = tokens.copy()
    names = list(TOKEN_FEATURES)
    dec[:, names.index("r_in")] += 0.05  # r / 200 mm: 10 mm
    dec[:, names.index("dphi")] += 0.1  # dphi / 0.1 rad: 0.01 rad
    dec[:, names.index("z0")] -= 0.5  # z0 / 200 mm: 100 mm
    err = doublet_reconstruction_errors(tokens, dec)
    assert err["r_in_mm"] == pytest.approx(10.0, rel=1e-5) and err["r_out_mm"] == 0.0
    assert err["dphi_rad"] == pytest.approx(0.01, rel=1e-4) and err["z0_mm"] == pytest.approx(100.0, rel=1e-5)
    assert err["xyz_in_mm"] == pytest.approx(10.0, rel=1e-5) and err["xyz_out_mm"] == pytest.approx(0.0, abs=1e-6)
    assert err["phi_in_rad"] == pytest.approx(0.0, abs=1e-6) and err["curvature_per_mm"] == 0.0
    assert {"eta_in", "deta", "layer_out_layers", "dz_mm", "dr_mm", "r_in_mm_median"} <= set(err)


def test_doublet_tokenizer_trains_and_round_trips():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(8, 20, generator=g)
    x = centres[torch.randint(8, (2000,), generator=g)] + 0.01 * torch.randn(2000, 20, generator=g)
    tok = make_tokenizer(VQConfig(n_features=20, codebook_size=16, hidden=32), "doublets")
    assert isinstance(tok, DoubletTokenizer) and tok.tokens == "doublets" and tok.feature_names == TOKEN_FEATURES
    opt = torch.optim.Adam(tok.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        out = tok(x[torch.randint(len(x), (256,), generator=g)], g)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first if first is not None else out["mse"]
    assert out["mse"] < 0.2 * first
    tok.eval()
    codes = tok.encode(x)
    assert codes.shape == (2000,) and codes.dtype == torch.int64 and len(codes.unique()) >= 8
    assert tok.decode(codes).shape == (2000, 20)
    again = tokenizer_from_config(tok.config_dict())
    assert isinstance(again, DoubletTokenizer)
    again.load_state_dict(tok.state_dict())
    assert torch.equal(again.eval().encode(x), codes)
    # a hit tokenizer's config (also the files written before doublet tokenizers, without "tokens")
    hit = HitTokenizer(VQConfig(codebook_size=8))
    legacy = {k: v for k, v in hit.config_dict().items() if k != "tokens"}
    assert isinstance(tokenizer_from_config(legacy), HitTokenizer)


def test_doublet_tokenizer_errors():
    with pytest.raises(ConfigError, match="n_features=7 but the doublet token features"):
        DoubletTokenizer(VQConfig(n_features=7))
    with pytest.raises(ConfigError, match="tokenizer tokens: 'triplets' unknown"):
        make_tokenizer(VQConfig(), "triplets")
    with pytest.raises(ConfigError, match="doublet tokens have fixed features"):
        make_tokenizer(VQConfig(n_features=20), "doublets", FeatureConfig())
    with pytest.raises(ConfigError, match="tokens 'quads' unknown"):
        tokenizer_from_config({"tokens": "quads", "vq": {}})
    with pytest.raises(DataError, match=r"shape \(N, 20\)"):
        DoubletTokenizer(VQConfig(n_features=20))(torch.zeros(3, 7))
