"""The compact transformer of the CMS proposal (~30-50 M parameters): the ``cms`` preset's size,
and a forward and backward pass on a tiny input with every attention backend on the CPU."""

import pytest
import torch

from trackstudy.models.attention import REGISTRY, AttentionContext
from trackstudy.models.encoder import Encoder, EncoderConfig, parameter_count

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_cms_preset_has_30_to_50_million_parameters():
    cfg = EncoderConfig.preset("cms")
    d, f, L = cfg.d_model, cfg.d_ff, cfg.n_layers
    by_hand = cfg.n_features * d + d + L * (4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d) + 2 * d
    assert parameter_count(cfg) == by_hand
    assert 30_000_000 <= by_hand <= 50_000_000


@pytest.fixture(scope="module")
def cms_encoder():
    torch.manual_seed(0)
    return Encoder(EncoderConfig.preset("cms"))


@pytest.mark.parametrize("backend", sorted(REGISTRY))
def test_cms_preset_runs_with_every_backend(cms_encoder, backend):
    g = torch.Generator().manual_seed(0)
    lengths = (12, 7)
    labels = [torch.randint(0, 3, (n,), generator=g) for n in lengths]
    eta = [torch.randn(n, generator=g) for n in lengths]
    phi = [torch.rand(n, generator=g) * 6 - 3 for n in lengths]
    ctx = AttentionContext.from_events(labels, eta, phi, compile_block_mask=False)
    x = torch.randn(2, 12, 7, generator=g)
    cms_encoder.zero_grad(set_to_none=True)
    backward = REGISTRY[backend].cpu_backward  # flex: forward only on the CPU (it trains with packed there)
    with torch.set_grad_enabled(backward):
        h = cms_encoder(x, ctx, backend=backend)
    assert h.shape == (2, 12, 512) and torch.isfinite(h).all()
    if backward:
        h[ctx.pad_mask].pow(2).mean().backward()
        grad = cms_encoder.blocks[0].attn.c_attn.weight.grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
