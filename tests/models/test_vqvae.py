"""trackstudy.models.vqvae: codebook measures by hand, k-means start, EMA update, dead-code
restarts, the straight-through gradient, errors in detector units."""

import math

import numpy as np
import pytest
import torch

from trackstudy.errors import ConfigError, DataError
from trackstudy.models.features import FeatureConfig
from trackstudy.models.vqvae import (
    HitTokenizer,
    VectorQuantizer,
    VQConfig,
    codebook_stats,
    detector_units,
    reconstruction_errors,
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
