"""Every model family: one optimisation step lowers the loss on a fixed tiny real event, padding
never changes real hits' outputs, configs survive a weights_only checkpoint."""

import io

import numpy as np
import pytest
import torch

from trackstudy.config import ROOT
from trackstudy.data.io import merge_event, read_event, select_volumes
from trackstudy.errors import ConfigError
from trackstudy.inference import STAGES, predict_event
from trackstudy.models.encoder import EncoderConfig
from trackstudy.models.features import FeatureConfig, hit_features
from trackstudy.models.heads import TOKEN_FAMILIES, build_model, make_context, model_from_config
from trackstudy.models.roads import RoadBinning
from trackstudy.postprocessing.track_formation import EmbeddingTrackParams, ParamTrackParams, form_tracks, model_params
from trackstudy.training.targets import collate, event_targets


@pytest.fixture(scope="module")
def tiny_event():
    """~150 pixel hits of the real mini event: 25 particles with pT > 0.9 GeV plus some noise."""
    ev = select_volumes(read_event(ROOT / "data" / "real" / "mini"))
    df = merge_event(ev)
    rng = np.random.default_rng(0)
    pids = df.loc[(df.particle_id != 0) & (df.pt > 0.9), "particle_id"].unique()
    keep = rng.choice(pids, size=25, replace=False)
    noise = df.index[df.particle_id == 0].to_numpy()[:15]
    sel = df[df.particle_id.isin(keep) | df.index.isin(noise)].reset_index(drop=True)
    return sel


@pytest.fixture(scope="module")
def binning(tiny_event):
    return RoadBinning.fit(tiny_event, n_phi=4, n_theta=2, n_p=1)


def _sample(df, binning, cfg=FeatureConfig()):
    s = event_targets(df, binning)
    s["x"] = hit_features(df, cfg)
    # locality clusters: phi sextants (every real hit gets a label >= 0)
    s["cluster"] = ((df.phi.to_numpy() + np.pi) // (np.pi / 3)).astype(np.int64)
    return s


def _model(family, binning, **kw):
    torch.manual_seed(0)
    enc = EncoderConfig.preset("tiny", n_features=7, attention="dense")
    return build_model(family, enc, binning=binning if family in ("enc_cla", "jm") else None, cla_layers=1, **kw)


@pytest.mark.parametrize("family", TOKEN_FAMILIES)
def test_one_step_lowers_loss(family, tiny_event, binning):
    model = _model(family, binning)
    batch = collate([_sample(tiny_event, binning)])
    ctx = make_context(batch)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss0, parts = model.loss(model(batch["x"], ctx), batch)
    assert torch.isfinite(loss0) and loss0.item() > 0 and parts["loss"] == pytest.approx(loss0.item())
    opt.zero_grad()
    loss0.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    opt.step()
    with torch.no_grad():
        loss1, _ = model.loss(model(batch["x"], ctx), batch)
    assert loss1.item() < loss0.item()


@pytest.mark.parametrize("family", TOKEN_FAMILIES)
@pytest.mark.parametrize("backend", ["dense", "packed"])
def test_padding_never_changes_real_hits(family, backend, tiny_event, binning):
    model = _model(family, binning).eval()
    s = _sample(tiny_event, binning)
    small = collate([s])
    big = collate([s], pad_to=len(tiny_event) + 9)
    g = torch.Generator().manual_seed(1)
    big["x"][0, len(tiny_event):] = 1e4 * torch.randn(9, 7, generator=g)  # garbage features on padding
    with torch.no_grad():
        a = model(small["x"], make_context(small), backend=backend)
        b = model(big["x"], make_context(big), backend=backend)
        la, _ = model.loss(a, small)
        lb, _ = model.loss(b, big)
    n = len(tiny_event)
    for key in a:
        torch.testing.assert_close(b[key][0, :n], a[key][0], rtol=0, atol=1e-6)
        assert torch.isfinite(b[key]).all()
    assert lb.item() == pytest.approx(la.item(), rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("family", TOKEN_FAMILIES)
def test_batch_of_two_events_equals_each_alone(family, tiny_event, binning):
    model = _model(family, binning).eval()
    first = tiny_event.iloc[:80].reset_index(drop=True)
    second = tiny_event.iloc[80:].reset_index(drop=True)
    s1, s2 = _sample(first, binning), _sample(second, binning)
    batch = collate([s1, s2])
    with torch.no_grad():
        both = model(batch["x"], make_context(batch))
        alone = collate([s2])
        out2 = model(alone["x"], make_context(alone))
    for key in both:
        torch.testing.assert_close(both[key][1, : len(second)], out2[key][0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", TOKEN_FAMILIES)
def test_config_round_trip_weights_only(family, binning):
    model = _model(family, binning)
    buf = io.BytesIO()
    torch.save({"model_config": model.config_dict(), "model": model.state_dict()}, buf)
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    clone = model_from_config(ckpt["model_config"])
    clone.load_state_dict(ckpt["model"])
    assert clone.config_dict() == model.config_dict()
    if family in ("enc_cla", "jm"):
        assert clone.binning == binning
    x = torch.randn(1, 12, 7)
    with torch.no_grad():
        for key, value in model.eval()(x).items():
            torch.testing.assert_close(clone.eval()(x)[key], value)


def test_heads_shapes_and_defaults(binning):
    jm = _model("jm", binning)
    assert jm.head_cfg.alpha == 1.0 and jm.head_cfg.beta == 0.3
    out = jm(torch.randn(2, 5, 7))
    assert out["params"].shape == (2, 5, 4) and out["latent"].shape == (2, 5, 4)
    assert out["logits"].shape == (2, 5, binning.n_classes + 1)  # + noise class
    assert len(jm.encoders()) == 2 and jm.cla_cfg.n_features == 7 + 8
    c = _model("contrastive", binning)
    assert c(torch.randn(1, 3, 7))["embedding"].shape == (1, 3, 32)
    cla = _model("enc_cla", binning, noise="ignore")
    assert cla(torch.randn(1, 3, 7))["logits"].shape[-1] == binning.n_classes


def test_build_model_errors(binning):
    with pytest.raises(ConfigError, match="family"):
        build_model("gnn")
    with pytest.raises(ConfigError, match="n_classes"):
        build_model("enc_cla", "tiny")
    with pytest.raises(ConfigError, match="n_features"):
        build_model("contrastive", EncoderConfig.preset("tiny", n_features=3))
    with pytest.raises(ConfigError, match="unexpected keyword|foo"):
        build_model("contrastive", "tiny", foo=1)
    m = build_model("contrastive", "tiny", encoder_overrides={"attention": "packed", "n_layers": 1})
    assert m.encoder_cfg.attention == "packed" and m.encoder_cfg.n_layers == 1 and m.encoder_cfg.n_features == 7
    with pytest.raises(ConfigError, match="attention"):
        build_model("contrastive", "tiny", encoder_overrides={"attention": "sparse"})


@pytest.mark.parametrize("family", TOKEN_FAMILIES)
def test_predict_event_returns_submission_and_timings(family, tiny_event, binning):
    model = _model(family, binning)
    params = {"enc_reg": ParamTrackParams(algorithm="dbscan", eps=0.05),
              "contrastive": EmbeddingTrackParams(device="cpu")}.get(family)
    model.track_params = params  # None: the family's defaults
    sub, t = predict_event(model, tiny_event, locality=None, event_id=5)
    assert len(sub) == len(tiny_event) and (sub.event_id == 5).all()
    np.testing.assert_array_equal(sub.hit_id, tiny_event.hit_id)
    assert sub.track_id.min() >= 0
    assert set(t) == {*STAGES, "total", "n_hits"}
    assert model.training  # predict_event restores the mode


def test_form_tracks_from_batch_removes_padding(tiny_event, binning):
    model = _model("enc_cla", binning).eval()
    first = tiny_event.iloc[:50].reset_index(drop=True)
    second = tiny_event.iloc[50:].reset_index(drop=True)
    batch = collate([_sample(first, binning), _sample(second, binning)])
    with torch.no_grad():
        out = model(batch["x"], make_context(batch))
    pad = batch["pad_mask"]
    sub = form_tracks(model.event_outputs(out, 0, pad), first.hit_id.to_numpy(), event_id=1, params=model_params(model))
    assert len(sub) == 50
    sub2 = form_tracks(model.event_outputs(out, 1, pad), second.hit_id.to_numpy(), cluster=batch["cluster"][1][pad[1]],
                       params=model_params(model))
    assert len(sub2) == len(second)
