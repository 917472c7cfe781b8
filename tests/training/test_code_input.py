"""A contrastive model whose only input is each hit's VQ code (``model.input: codes``): the code is
really the only input, the model round-trips through its config and state dict, a tiny run trains
through ``trackstudy train`` with the tokenizer of a tiny pretraining run, predict and evaluate
read the run alone, and bad configs are clear errors."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from trackstudy.cli import main
from trackstudy.errors import ConfigError, DataError
from trackstudy.models.attention import AttentionContext
from trackstudy.models.compiled import BucketedModel
from trackstudy.models.export import export_onnx
from trackstudy.models.features import FeatureConfig
from trackstudy.models.heads import build_model, model_from_config
from trackstudy.models.vqvae import DoubletTokenizer, HitTokenizer, VQConfig
from trackstudy.training import resolve_config, train
from trackstudy.training.checkpoint import load_run
from trackstudy.training.data import dataset_folder
from trackstudy.training.pretrain import pretrain

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN = {"n_events": 4, "pileup": 20, "seed": 0, "tracks": "10:30"}
VAL = {"n_events": 2, "pileup": 20, "seed": 1, "tracks": "10:30"}


def _tokenizer(seed=0, **feature_cfg) -> HitTokenizer:
    torch.manual_seed(seed)
    feats = FeatureConfig(**feature_cfg)
    tok = HitTokenizer(VQConfig(n_features=feats.n_features, codebook_size=16, hidden=16), feats)
    tok.train()
    tok(torch.randn(512, feats.n_features), torch.Generator().manual_seed(seed))  # k-means start of the codebook
    return tok.eval()


def test_the_code_is_the_only_input():
    tok = _tokenizer()
    model = build_model("contrastive", "tiny", tokenizer=tok).eval()
    assert model.input == "codes" and model.encoder_cfg.n_features == model.encoder_cfg.d_model
    assert model.feature_cfg == tok.feature_cfg
    assert not any(p.requires_grad for p in model.tokenizer.parameters())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 40, 7, generator=g, requires_grad=True)
    pad = torch.ones(2, 40, dtype=torch.bool)
    pad[1, 30:] = False
    ctx = AttentionContext(pad)
    out = model(x, ctx)
    assert out["embedding"].shape == (2, 40, 32)
    out["embedding"].sum().backward()
    assert x.grad is None  # nothing of x reaches the output but through the code
    codes = model.codes(x)
    assert codes.shape == (2, 40) and codes.dtype == torch.int64
    # other features with the same codes: the same outputs; the tokenizer's decoded codes are such features
    decoded = tok.decode(codes)
    same = decoded if torch.equal(tok.encode(decoded), codes) else None
    if same is not None:
        torch.testing.assert_close(model(same, ctx)["embedding"], out["embedding"], rtol=0, atol=0)
    moved = x.detach().clone()
    moved[..., 0] += 1e-4  # a nudge that keeps every code (checked) keeps every output
    if torch.equal(model.codes(moved), codes):
        torch.testing.assert_close(model(moved, ctx)["embedding"], out["embedding"], rtol=0, atol=0)
    # the embedding of a hit's code is what the encoder reads: changing one code's embedding moves that hit
    with torch.no_grad():
        model.code_embedding.weight[codes[0, 0]] += 1.0
    assert not torch.allclose(model(x, ctx)["embedding"][0, 0], out["embedding"][0, 0])
    # padding rows may hold anything (NaN) without changing the real hits
    nan = x.detach().clone()
    nan[1, 30:] = float("nan")
    assert torch.isfinite(model(nan, ctx)["embedding"]).all()


def test_config_roundtrip_and_state_dict_carry_the_tokenizer():
    model = build_model("contrastive", "tiny", tokenizer=_tokenizer(), filter_weight=0.5)
    cfg = model.config_dict()
    assert cfg["input"] == "codes" and cfg["tokenizer"]["tokens"] == "hits"
    again = model_from_config(cfg)
    again.load_state_dict(model.state_dict())
    assert any(k.startswith("tokenizer.quantizer.codebook") for k in model.state_dict())
    x = torch.randn(1, 25, 7)
    torch.testing.assert_close(again.eval()(x)["embedding"], model.eval()(x)["embedding"])
    plain = build_model("contrastive", "tiny")
    assert plain.config_dict()["input"] == "features" and plain.config_dict()["tokenizer"] is None
    assert isinstance(model_from_config({k: v for k, v in plain.config_dict().items()
                                         if k not in ("input", "tokenizer")}), type(plain))  # older runs


def test_model_errors():
    tok = _tokenizer()
    with pytest.raises(ConfigError, match="'codes' is an option of the contrastive family, not of 'enc_reg'"):
        build_model("enc_reg", "tiny", tokenizer=tok)
    with pytest.raises(ConfigError, match="a hit-token model reads the codes of a hit tokenizer"):
        build_model("contrastive", "tiny", tokenizer=DoubletTokenizer(VQConfig(n_features=20)))
    with pytest.raises(ConfigError, match="the features of a code-input model are its tokenizer's"):
        build_model("contrastive", "tiny", tokenizer=tok, feature_cfg=FeatureConfig(names=("x", "y", "z")))
    with pytest.raises(ConfigError, match="has no tokenizer"):
        build_model("contrastive", "tiny").codes(torch.zeros(1, 2, 7))
    cfg = build_model("contrastive", "tiny", tokenizer=tok).config_dict()
    with pytest.raises(ConfigError, match="input 'codes' without its tokenizer"):
        model_from_config({**cfg, "tokenizer": None})
    with pytest.raises(ConfigError, match="input 'pixels' unknown"):
        model_from_config({**cfg, "input": "pixels"})
    with pytest.raises(ConfigError, match="is not exported"):
        export_onnx(build_model("contrastive", "tiny", tokenizer=tok), "unused.onnx")
    with pytest.raises(ConfigError, match="runs uncompiled"):
        BucketedModel(build_model("contrastive", "tiny", tokenizer=tok))


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("code_input_data")


@pytest.fixture(scope="module")
def pretrained(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("code_input_pretrain") / "run"
    pretrain({"model": {"preset": "tiny", "backend": "dense"}, "mask": {"target": "codes"},
              "data": {"train": dict(TRAIN), "val": dict(VAL), "root": str(data_root)},
              "tokenizer": {"codebook_size": 16, "steps": 20, "batch_hits": 256, "hidden": 16},
              "train": {"steps": 1, "batch_size": 2, "eval_every": 1, "checkpoint_every": 1, "device": "cpu",
                        "num_threads": 1}}, out, progress=False)
    return out


def _train_cfg(data_root, tokenizer) -> dict:
    return {"model": {"family": "contrastive", "preset": "tiny", "backend": "dense", "head": {"pt_min": 0.0},
                      "input": "codes", "tokenizer": str(tokenizer)},
            "data": {"train": dict(TRAIN), "val": dict(VAL), "root": str(data_root)},
            "train": {"steps": 3, "batch_size": 2, "lr": 3e-3, "eval_every": 3, "checkpoint_every": 3,
                      "device": "cpu", "num_threads": 1, "restore_best": False, "eval_tracks": 1},
            "tune": {"n_events": 0}}


def test_train_predict_evaluate_with_codes(data_root, pretrained, tmp_path, capsys):
    out = tmp_path / "codes"
    s = train(_train_cfg(data_root, pretrained), out, progress=False)
    assert s["steps"] == 3 and np.isfinite(s["best_val_loss"])
    model, cfg = load_run(out, device="cpu")
    assert model.input == "codes" and cfg["model"]["input"] == "codes"
    tok = HitTokenizer.from_config(model.tokenizer.config_dict())
    assert tok.feature_cfg == model.feature_cfg
    # the run alone serves inference: the tokenizer's folder may go
    (pretrained / "tokenizer.pt").rename(tmp_path / "moved_tokenizer.pt")
    try:
        data = dataset_folder(cfg["data"]["val"], data_root, progress=False)
        sub = tmp_path / "sub.csv"
        assert main(["predict", "--run", str(out), "--data", str(data), "--out", str(sub), "--events", "1",
                     "--quiet"]) == 0
        df = pd.read_csv(sub)
        assert list(df.columns) == ["event_id", "hit_id", "track_id"] and len(df) > 0
        assert main(["evaluate", "--data", str(data), "--submission", str(sub), "--json"]) == 0
        assert "trackml_score" in capsys.readouterr().out
    finally:
        (tmp_path / "moved_tokenizer.pt").rename(pretrained / "tokenizer.pt")


@pytest.mark.parametrize("change, match", [
    ({"tokenizer": ""}, "model.tokenizer: model.input 'codes' needs a tokenizer"),
    ({"family": "enc_reg"}, "model.input: 'codes' is an option of model.family contrastive, not 'enc_reg'"),
    ({"features": {"z_scale": 500.0}}, "model.features: given \\['z_scale'\\] but model.input is 'codes'"),
    ({"init_from": "runs/x"}, "model.init_from: a pretrained encoder reads hit features"),
    ({"input": "pixels"}, "model.input"),
    ({"input": "features"}, "model.tokenizer: given .* but model.input is 'features'"),
])
def test_config_errors_name_the_key(change, match):
    cfg = {"model": {"family": "contrastive", "input": "codes", "tokenizer": "runs/pretrain"}}
    cfg["model"].update(change)
    with pytest.raises(ConfigError, match=match):
        resolve_config(cfg)


def test_missing_or_wrong_tokenizer_is_a_clear_error(data_root, tmp_path):
    with pytest.raises(DataError, match="model.tokenizer: .*tokenizer not found"):
        train(_train_cfg(data_root, tmp_path / "nothing"), tmp_path / "a", progress=False)
    doublet = tmp_path / "doublet_tokenizer.pt"
    tok = DoubletTokenizer(VQConfig(n_features=20, codebook_size=8))
    torch.save({"config": tok.config_dict(), "state_dict": tok.state_dict()}, doublet)
    with pytest.raises(ConfigError, match="holds a tokenizer of doublets; a hit-token model reads"):
        train(copy.deepcopy(_train_cfg(data_root, doublet)), tmp_path / "b", progress=False)
