"""trackstudy.models.encoder: shapes, presets, padding invariance, backend equivalence."""

import pytest
import torch

from trackstudy.errors import ConfigError, DataError
from trackstudy.models.attention import AttentionContext
from trackstudy.models.encoder import PRESETS, Encoder, EncoderConfig, parameter_count, preset_parameter_counts

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LENGTHS = (120, 75, 33)


def _setup(seed=0, backend="dense", lengths=LENGTHS, **cfg):
    torch.manual_seed(seed)
    config = EncoderConfig.preset("tiny", attention=backend, **cfg)
    model = Encoder(config).eval()
    g = torch.Generator().manual_seed(seed)
    labels = [torch.randint(0, 8, (n,), generator=g) for n in lengths]
    eta = [torch.randn(n, generator=g) for n in lengths]
    phi = [torch.rand(n, generator=g) * 6 - 3 for n in lengths]
    ctx = AttentionContext.from_events(labels, eta, phi, compile_block_mask=False)
    x = torch.randn(len(lengths), max(lengths), config.n_features, generator=g)
    x = x.masked_fill(~ctx.pad_mask[..., None], float("nan"))  # padding content must not matter
    return model, x, ctx


def _expected_count(c: EncoderConfig) -> int:
    d, f = c.d_model, c.d_ff
    per_block = (d * 3 * d + 3 * d) + (d * d + d) + 2 * (2 * d) + (d * f + f) + (f * d + d)
    return c.n_features * d + d + c.n_layers * per_block + 2 * d


def test_parameter_counts_by_hand():
    paper = EncoderConfig.preset("paper")
    assert (paper.n_layers, paper.n_heads, paper.d_model, paper.d_ff) == (12, 4, 192, 384)
    counts = preset_parameter_counts()
    for name in PRESETS:
        assert counts[name] == _expected_count(EncoderConfig.preset(name))
    assert counts["paper"] == 3_566_208
    assert 30e6 <= counts["cms"] <= 50e6
    assert counts["tiny"] < counts["small"] < 1e6
    assert Encoder(EncoderConfig.preset("tiny")).num_parameters() == parameter_count(EncoderConfig.preset("tiny"))


def test_output_shape_and_zero_padding():
    model, x, ctx = _setup()
    h = model(x, ctx)
    assert h.shape == (3, 120, model.config.d_model)
    assert torch.isfinite(h).all()
    assert (h[~ctx.pad_mask] == 0).all()
    assert (h[ctx.pad_mask].abs().sum(-1) > 0).all()


def test_no_context_means_full_attention_without_padding():
    model, x, ctx = _setup(lengths=(40,))
    full = AttentionContext(batch_size=1, seq_len=40)
    torch.testing.assert_close(model(x), model(x, full))


@pytest.mark.parametrize("backend", ["dense", "packed", "explicit", "lsh"])
def test_padding_never_changes_real_outputs(backend):
    model, x, ctx = _setup(backend=backend)
    batched = model(x, ctx)
    for b, n in enumerate(LENGTHS):
        sub = AttentionContext(ctx.pad_mask[b:b + 1, :n], ctx.cluster_labels[b:b + 1, :n], ctx.eta[b:b + 1, :n],
                               ctx.phi[b:b + 1, :n])
        alone = model(x[b:b + 1, :n], sub)
        torch.testing.assert_close(batched[b, :n], alone[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["packed", "explicit"])
def test_backends_give_the_same_encoder_outputs_and_gradients(backend):
    # float64: parameter gradients sum over every hit, so float32 rounding would blur the check
    model, x, ctx = _setup()
    model, x = model.double().train(), x.double()
    w = torch.randn(3, 120, model.config.d_model, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = {}
    outs = {}
    for name in ("dense", backend):
        model.zero_grad()
        out = model(x, ctx, backend=name)
        (out * w).sum().backward()
        outs[name] = out.detach()
        grads[name] = {n: p.grad.clone() for n, p in model.named_parameters()}
    torch.testing.assert_close(outs[backend], outs["dense"], atol=1e-10, rtol=0)
    for n in grads["dense"]:
        torch.testing.assert_close(grads[backend][n], grads["dense"][n], atol=1e-10, rtol=0)


def test_packed_encoder_runs_cluster_by_cluster_with_singletons_and_padding():
    """The packed encoder sends each bin of clusters through all the blocks; hits alone in their
    cluster (sequences of length 1) and padding must give what the dense cluster mask gives."""
    torch.manual_seed(0)
    model = Encoder(EncoderConfig.preset("tiny")).double().train()
    sizes = [(1, 1, 2, 5, 40), (3, 1, 9)]  # clusters per event; event 1 is padded
    labels = [torch.repeat_interleave(torch.arange(len(s)), torch.tensor(s))[torch.randperm(sum(s))] for s in sizes]
    ctx = AttentionContext.from_events(labels)
    x = torch.randn(2, 49, model.config.n_features, dtype=torch.float64)
    outs, grads = {}, {}
    for name in ("dense", "packed"):
        model.zero_grad()
        out = model(x, ctx, backend=name)
        out.square().sum().backward()
        outs[name], grads[name] = out.detach(), [p.grad.clone() for p in model.parameters()]
    torch.testing.assert_close(outs["packed"], outs["dense"], atol=1e-10, rtol=0)
    for a, b in zip(grads["packed"], grads["dense"]):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    assert (outs["packed"][1, 13:] == 0).all()  # padding


def test_packed_encoder_under_bf16_autocast_trains():
    """The GPU path trains under bf16 autocast; on the CPU the same autocast checks the dtypes of
    the cluster-by-cluster packed encoder (forward close to dense, backward runs)."""
    model, x, ctx = _setup()
    model.train()
    outs = {}
    for name in ("dense", "packed"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, ctx, backend=name)
        out.float().square().sum().backward()
        outs[name] = out.detach().float()
    torch.testing.assert_close(outs["packed"], outs["dense"], atol=0.05, rtol=0.05)


def test_flex_encoder_forward_equals_dense():
    model, x, ctx = _setup()
    with torch.no_grad():
        torch.testing.assert_close(model(x, ctx, backend="flex"), model(x, ctx, backend="dense"), atol=1e-5, rtol=0)


def test_return_attention_gives_per_layer_cluster_masked_weights():
    model, x, ctx = _setup(backend="packed")
    h, maps = model(x, ctx, return_attention=True)
    torch.testing.assert_close(h, model(x, ctx), atol=1e-5, rtol=0)
    assert len(maps) == model.config.n_layers
    B, T = ctx.pad_mask.shape
    for w in maps:
        assert w.shape == (B, model.config.n_heads, T, T)
        torch.testing.assert_close(w.sum(-1), torch.ones(B, model.config.n_heads, T))
        other = ctx.cluster_labels[:, None, :, None] != ctx.cluster_labels[:, None, None, :]
        assert (w[other.expand_as(w)] == 0).all()
    with pytest.raises(ConfigError, match="return_attention needs an exact backend"):
        model(x, ctx, backend="lsh", return_attention=True)


def test_config_validation_and_round_trip(tmp_path):
    with pytest.raises(ConfigError, match="not divisible by n_heads"):
        EncoderConfig(d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="attention 'flash' is unknown"):
        EncoderConfig(attention="flash")
    with pytest.raises(ConfigError, match="preset 'huge' unknown"):
        EncoderConfig.preset("huge")
    with pytest.raises(ConfigError, match="unknown field 'd_modle'"):
        EncoderConfig.from_dict({"d_modle": 3})
    with pytest.raises(ConfigError, match="n_layers must be a positive integer"):
        EncoderConfig(n_layers=0)
    with pytest.raises(ConfigError, match="bucket_width"):
        EncoderConfig(lsh_bucket_width=-1.0)
    cfg = EncoderConfig.preset("tiny", dropout=0.1, attention="packed")
    model = Encoder(cfg)
    path = tmp_path / "enc.pt"
    torch.save({"config": cfg.to_dict(), "model": model.state_dict()}, path)
    ckpt = torch.load(path, weights_only=True)
    again = Encoder(EncoderConfig.from_dict(ckpt["config"]))
    again.load_state_dict(ckpt["model"])
    assert again.config == cfg
    x = torch.randn(1, 10, cfg.n_features)
    torch.testing.assert_close(again.eval()(x), model.eval()(x))


def test_bad_shapes_are_data_errors():
    model, x, ctx = _setup()
    with pytest.raises(DataError, match=r"input must have shape \(B, T, 7\)"):
        model(x[..., :3], ctx)
    with pytest.raises(DataError, match="AttentionContext is for"):
        model(x[:, :50], ctx)


def test_training_step_reduces_a_loss_with_packed_backend():
    model, x, ctx = _setup(backend="packed")
    model.train()
    target = torch.randn(3, 120, model.config.d_model, generator=torch.Generator().manual_seed(2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    real = ctx.pad_mask[..., None]
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = ((model(x, ctx) - target) ** 2 * real).sum() / real.sum()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("backend", ["dense", "packed"])
def test_no_grad_in_place_path_equals_autograd_and_keeps_the_input(backend):
    # without autograd the blocks update the residual stream in place: same numbers, caller's x untouched
    model, x, ctx = _setup(backend=backend)
    x = torch.nan_to_num(x)
    x_copy = x.clone()
    with_grad = model(x, ctx)
    with torch.no_grad():
        no_grad = model(x, ctx)
    with torch.inference_mode():
        inference = model(x, ctx)
    assert torch.equal(with_grad.detach(), no_grad) and torch.equal(no_grad, inference)
    assert torch.equal(x, x_copy)
