"""trackstudy.models.masked: the BERT-style corruption (15% selected; 80% masked, 10% random, 10%
kept; visible features and padding untouched), the loss on selected hits only, the encoder hook."""

import pytest
import torch

from trackstudy.errors import ConfigError
from trackstudy.models.attention import AttentionContext
from trackstudy.models.encoder import Encoder, EncoderConfig
from trackstudy.models.features import FeatureConfig
from trackstudy.models.masked import MaskConfig, MaskedHitModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(target="both", **mask):
    torch.manual_seed(0)
    return MaskedHitModel(EncoderConfig.preset("tiny"), FeatureConfig(), MaskConfig(target=target, **mask),
                          n_codes=16 if target != "features" else 0)


def _batch(B=8, T=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, 7, generator=g)
    pad = torch.ones(B, T, dtype=torch.bool)
    pad[min(1, B - 1), T * 3 // 5:] = False
    pad[B - 1, T // 5:] = False
    return x, pad


def test_corruption_fractions_and_what_is_kept():
    model = _model()
    x, pad = _batch()
    x_in, sel, mask_tok = model.corrupt(x, pad, torch.Generator().manual_seed(1))
    n_real = int(pad.sum())
    assert not (sel & ~pad).any()  # padding is never selected
    assert int(sel.sum()) / n_real == pytest.approx(0.15, abs=0.015)
    hidden = model.hidden
    assert FeatureConfig().names == ("x", "y", "z", "r", "sin_phi", "cos_phi", "eta")
    assert hidden.tolist() == [True, True, False, False, True, True, False]  # z, r, eta visible
    torch.testing.assert_close(x_in[..., ~hidden], x[..., ~hidden])  # positions always kept
    torch.testing.assert_close(x_in[~sel], x[~sel])  # unselected hits untouched
    assert (x_in[mask_tok][:, hidden] == 0).all()
    changed = (x_in[sel][:, hidden] != x[sel][:, hidden]).any(-1)
    masked_share = int(mask_tok.sum()) / int(sel.sum())
    replaced_share = int((changed & ~mask_tok[sel]).sum()) / int(sel.sum())
    assert masked_share == pytest.approx(0.8, abs=0.05)
    assert replaced_share == pytest.approx(0.1, abs=0.04)
    # the same generator state gives the same corruption
    again = model.corrupt(x, pad, torch.Generator().manual_seed(1))
    torch.testing.assert_close(again[0], x_in)
    assert torch.equal(again[1], sel)


def test_loss_only_sees_selected_hits():
    model = _model()
    x, pad = _batch(B=2, T=40)
    x_in, sel, mask_tok = model.corrupt(x, pad, torch.Generator().manual_seed(3))
    codes = torch.randint(16, (2, 40))
    out = model(x_in, AttentionContext(pad), mask_tok)
    assert out["features"].shape == (2, 40, 7) and out["logits"].shape == (2, 40, 16)
    loss, parts = model.loss(out, x, sel, codes)
    assert set(parts) >= {"mse", "ce", "code_accuracy", "phi_error_rad", "loss", "n_selected"}
    # changing the targets of unselected hits changes nothing
    x2, codes2 = x.clone(), codes.clone()
    x2[~sel] += 5.0
    codes2[~sel] = (codes2[~sel] + 1) % 16
    loss2, _ = model.loss(out, x2, sel, codes2)
    assert loss2.item() == pytest.approx(loss.item())
    loss.backward()
    assert model.mask_embedding.grad is not None and model.mask_embedding.grad.abs().sum() > 0


def test_feature_target_needs_no_codes_and_codes_need_a_tokenizer():
    model = _model("features")
    assert model.code_head is None
    x, pad = _batch(B=1, T=30)
    x_in, sel, mt = model.corrupt(x, pad, torch.Generator().manual_seed(0))
    loss, parts = model.loss(model(x_in, None, mt), x, sel)
    assert "ce" not in parts and loss.item() > 0
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        MaskedHitModel(EncoderConfig.preset("tiny"), FeatureConfig(), MaskConfig(target="codes"), n_codes=0)


def test_mask_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="mask.rate"):
        MaskConfig(rate=0.0)
    with pytest.raises(ConfigError, match="replace_mask \\+ mask.replace_random"):
        MaskConfig(replace_mask=0.9, replace_random=0.2)
    with pytest.raises(ConfigError, match="mask.target"):
        MaskConfig(target="tokens")
    with pytest.raises(ConfigError, match="mask.visible: 'theta' is not one of"):
        MaskConfig(visible=("theta",)).visible_features(FeatureConfig())
    with pytest.raises(ConfigError, match="nothing is left to predict"):
        MaskConfig(visible=FeatureConfig().names).visible_features(FeatureConfig())
    with pytest.raises(ConfigError, match="unknown config key 'mask.ratio'"):
        MaskConfig.from_dict({"ratio": 0.1})


def test_token_embedding_hook_adds_to_the_input_embeddings():
    torch.manual_seed(0)
    enc = Encoder(EncoderConfig.preset("tiny")).eval()
    x = torch.randn(2, 10, 7)
    zero = torch.zeros(2, 10, enc.config.d_model)
    torch.testing.assert_close(enc(x, token_embedding=zero), enc(x))
    bump = zero.clone()
    bump[0, 3] = 1.0
    assert not torch.allclose(enc(x, token_embedding=bump), enc(x))


def test_config_roundtrip():
    model = _model()
    again = MaskedHitModel.from_config(model.config_dict())
    assert again.config_dict() == model.config_dict()
    again.load_state_dict(model.state_dict())


def test_doublet_tokens_predict_codes():
    from trackstudy.models.doublet import TOKEN_FEATURES

    torch.manual_seed(0)
    enc = EncoderConfig.preset("tiny", n_features=len(TOKEN_FEATURES))
    model = MaskedHitModel(enc, mask_cfg=MaskConfig(target="codes", rate=0.5), n_codes=8, tokens="doublets",
                           token_hidden=16)
    assert model.code_head is not None and model.token_mlp is not None
    g = torch.Generator().manual_seed(0)
    # a tiny problem: the code of a doublet is a function of its hidden features
    x = torch.randn(4, 30, len(TOKEN_FEATURES), generator=g)
    pad = torch.ones(4, 30, dtype=torch.bool)
    pad[3, 20:] = False
    codes = (x[..., list(TOKEN_FEATURES).index("dphi")] > 0).long() * 4 + torch.randint(2, (4, 30), generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        x_in, sel, mt = model.corrupt(x, pad, torch.Generator().manual_seed(step))
        out = model(x_in, AttentionContext(pad), mt)
        assert out["logits"].shape == (4, 30, 8) and out["features"].shape == (4, 30, 20)
        loss, parts = model.loss(out, x, sel, codes)
        assert "mse" not in parts and 0 <= parts["code_accuracy"] <= 1
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
    both = MaskedHitModel(enc, mask_cfg=MaskConfig(target="both"), n_codes=8, tokens="doublets", token_hidden=16)
    assert MaskedHitModel.from_config(both.config_dict()).config_dict() == both.config_dict()
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        MaskedHitModel(enc, mask_cfg=MaskConfig(target="both"), n_codes=0, tokens="doublets")
