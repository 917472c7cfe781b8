"""trackstudy.training.pretrain: a tiny pretraining run (tokenizer, masked hits), exact resume,
real hits without truth, the encoder loaded into a track model exactly, and the errors of
mismatched encoders and of bad configs."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from trackstudy.errors import ConfigError, DataError
from trackstudy.models.features import FeatureConfig
from trackstudy.models.heads import build_model
from trackstudy.training import train
from trackstudy.training.pretrain import (
    PRETRAINED_FILE,
    TOKENIZER_FILE,
    Pretrainer,
    load_tokenizer,
    masked_accuracy_curve,
    pretrain,
    resolve_pretrain_config,
    set_pretrain_value,
    unlabelled_samples,
)
from trackstudy.training.pretrained import encoder_state, init_encoder, load_pretrained

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("trackstudy_data")


def tiny(root, **sections) -> dict:
    cfg = {
        "model": {"preset": "tiny", "backend": "dense"},
        "data": {"train": {"n_events": 4, "pileup": 20, "seed": 0, "tracks": "10:30"},
                 "val": {"n_events": 2, "pileup": 20, "seed": 1, "tracks": "10:30"}, "root": str(root)},
        "tokenizer": {"codebook_size": 16, "steps": 20, "batch_hits": 256, "hidden": 16},
        "train": {"steps": 6, "batch_size": 2, "lr": 3e-3, "warmup_steps": 2, "eval_every": 3, "checkpoint_every": 3,
                  "device": "cpu", "num_threads": 1},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


@pytest.fixture(scope="module")
def finished(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "run"
    summary = pretrain(tiny(data_root), out, progress=False)
    return out, summary


def test_a_tiny_run_writes_its_folder(finished):
    out, s = finished
    for name in ("config.yaml", TOKENIZER_FILE, PRETRAINED_FILE, "checkpoints/last.pt", "log_steps.csv",
                 "log_val.csv", "summary.json", "log_tokenizer.csv"):
        assert (out / name).is_file(), name
    assert s["steps"] == 6 and s["stopped"] == "steps" and s["target"] == "both"
    assert json.loads((out / "summary.json").read_text())["steps"] == 6
    t = s["tokenizer"]
    assert t["codebook_size"] == 16 and t["used"] + t["dead"] == 16 and 1 <= t["perplexity"] <= 16
    assert t["xyz_mm"] > 0 and 0 <= t["phi_rad"] <= 3.1416
    v = s["validation"]
    assert 0 <= v["val_code_accuracy"] <= 1 and v["val_loss"] > 0
    curve = masked_accuracy_curve(out)
    assert list(curve["step"]) == [3, 6] and "val_code_accuracy" in curve
    tok, measures = load_tokenizer(out)
    assert tok.config.codebook_size == 16 and measures["used"] == t["used"]
    # every .pt file loads with weights_only
    for name in (TOKENIZER_FILE, PRETRAINED_FILE, "checkpoints/last.pt"):
        torch.load(out / name, weights_only=True)


def test_resume_equals_an_uninterrupted_run(data_root, tmp_path, finished):
    out, _ = finished
    half = tmp_path / "half"

    def stop_at_4(step, row):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny(data_root), half, progress=False, on_step=stop_at_4)
    assert torch.load(half / "checkpoints/last.pt", weights_only=True)["step"] == 4
    # continuing from the interrupt reaches the uninterrupted run's weights exactly
    s = pretrain(tiny(data_root), half, resume=True, progress=False)
    assert s["steps"] == 6
    a = torch.load(out / PRETRAINED_FILE, weights_only=True)["state_dict"]
    b = torch.load(half / PRETRAINED_FILE, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_run_folder_rules(data_root, finished):
    out, _ = finished
    with pytest.raises(ConfigError, match="continue it with --resume"):
        Pretrainer(tiny(data_root), out).fit()
    with pytest.raises(ConfigError, match="cannot resume with a different config: train.lr"):
        Pretrainer(tiny(data_root, train={"lr": 1e-3}), out, resume=True).fit()


def test_init_from_loads_the_encoder_exactly_and_heads_stay_fresh(finished):
    out, _ = finished
    model = build_model("contrastive", "tiny")
    head_before = model.projection.weight.detach().clone()
    info = init_encoder(model, out)
    assert info["step"] == 6 and info["file"].endswith(PRETRAINED_FILE)
    _, obj = load_pretrained(out)
    want = encoder_state(obj["state_dict"])
    got = model.encoder.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    assert torch.equal(model.projection.weight, head_before)


def test_init_from_refuses_other_shapes_and_features(finished, tmp_path):
    out, _ = finished
    with pytest.raises(ConfigError, match=r"encoder shapes differ: .*\(d_model=32, .*\(d_model=64"):
        init_encoder(build_model("contrastive", "small", encoder_overrides={"n_heads": 2}), out)
    with pytest.raises(ConfigError, match="n_heads=2, this model 4"):
        init_encoder(build_model("contrastive", "tiny", encoder_overrides={"n_heads": 4}), out)
    with pytest.raises(ConfigError, match="set model.features as in the pretraining"):
        init_encoder(build_model("contrastive", "tiny", feature_cfg=FeatureConfig(z_scale=500.0)), out)
    with pytest.raises(DataError, match="pretraining run not found"):
        init_encoder(build_model("contrastive", "tiny"), tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="neither pretrained.pt nor checkpoints/last.pt"):
        init_encoder(build_model("contrastive", "tiny"), tmp_path / "empty")


def test_train_with_init_from(data_root, finished, tmp_path):
    out, _ = finished
    cfg = {"model": {"family": "contrastive", "preset": "tiny", "backend": "dense", "head": {"pt_min": 0.0},
                     "init_from": str(out)},
           "data": {"train": {"n_events": 4, "pileup": 20, "seed": 0, "tracks": "10:30"},
                    "val": {"n_events": 2, "pileup": 20, "seed": 1, "tracks": "10:30"}, "root": str(data_root)},
           "train": {"steps": 2, "batch_size": 2, "eval_every": 2, "checkpoint_every": 2, "device": "cpu",
                     "num_threads": 1, "restore_best": False},
           "tune": {"n_events": 0}}
    s = train(copy.deepcopy(cfg), tmp_path / "ft", progress=False)
    assert any("encoder initialised from" in n for n in s["notices"])
    cfg["model"]["preset"] = "small"
    with pytest.raises(ConfigError, match="model.init_from .*encoder shapes differ"):
        train(cfg, tmp_path / "ft_small", progress=False)


def test_real_hits_without_truth(mini_dir, data_root, tmp_path):
    samples = unlabelled_samples(mini_dir, feature_cfg=FeatureConfig(), locality=None, pixel_only=True)
    assert len(samples) == 1 and "particle_id" not in samples[0] and samples[0]["x"].shape[1] == 7
    cfg = tiny(data_root, data={"real": ["mini"], "train": {"n_events": 0}},
               locality={"method": "dbscan"}, model={"preset": "tiny", "backend": "packed"})
    cfg["data"]["sequences"] = "cluster"
    s = pretrain(cfg, tmp_path / "real", progress=False)
    assert s["steps"] == 6 and s["data"]["sources"][0].endswith("mini")
    assert s["data"]["n_sequences"] > 1


@pytest.mark.parametrize("change, match", [
    ({"mask": {"rate": 2.0}}, "mask.rate"),
    ({"mask": {"visible": ["theta"]}}, "mask.visible: 'theta'"),
    ({"mask": {"colour": 1}}, "unknown config key 'mask.colour'"),
    ({"tokenizer": {"codebook_size": 0}}, "tokenizer.codebook_size"),
    ({"tokenizer": {"steps": 0}}, "tokenizer.steps"),
    ({"data": {"real": ["moon"]}}, "data.real"),
    ({"data": {"sequences": "cluster"}}, "data.sequences"),
    ({"model": {"preset": "huge"}}, "model.preset"),
    ({"train": {"steps": 0}}, "train.steps"),
    ({"model": {"encoder": {"geo_bias": True}}}, "model.encoder.geo_bias"),  # at load, not at the first forward
])
def test_config_errors_name_the_key(change, match):
    cfg = {"data": {"train": {"n_events": 2}, "val": {"n_events": 1}}}
    for k, v in change.items():
        cfg.setdefault(k, {}).update(v)
    with pytest.raises(ConfigError, match=match):
        resolve_pretrain_config(cfg)


def test_set_values_in_every_section():
    cfg = {}
    set_pretrain_value(cfg, "mask.rate=0.3")
    set_pretrain_value(cfg, "tokenizer.codebook_size=64")
    set_pretrain_value(cfg, "train.steps=5")
    r = resolve_pretrain_config(cfg)
    assert (r["mask"]["rate"], r["tokenizer"]["codebook_size"], r["train"]["steps"]) == (0.3, 64, 5)
    with pytest.raises(ConfigError, match="unknown section 'tune'"):
        set_pretrain_value(cfg, "tune.metric=x")
