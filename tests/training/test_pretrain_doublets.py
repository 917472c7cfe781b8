"""trackstudy.training.pretrain with data.tokens: doublets: the doublet samples of a tiny event, a
tiny run end to end with exact resume, its encoder and token MLP loaded into a doublet-token model
(and by trackstudy train), a run whose target is the codes of a doublet tokenizer, and the errors
of mismatched runs and of bad configs."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from trackstudy.errors import ConfigError
from trackstudy.graphs.module_map import build_graph
from trackstudy.models.doublet import TOKEN_FEATURES, DoubletConfig, DoubletTransformer
from trackstudy.models.encoder import EncoderConfig
from trackstudy.models.heads import build_model
from trackstudy.models.masked import MaskConfig, MaskedHitModel
from trackstudy.models.vqvae import DoubletTokenizer
from trackstudy.training import train
from trackstudy.training.checkpoint import torch_save_atomic
from trackstudy.training.data import dataset_folder
from trackstudy.training.pretrain import (
    DOUBLET_GRAPH_FILE,
    PRETRAINED_FILE,
    TOKENIZER_FILE,
    doublet_samples,
    fit_doublet_builder,
    pretrain,
    resolve_pretrain_config,
)
from trackstudy.training.pretrained import (
    check_init_from,
    encoder_state,
    init_doublet,
    init_encoder,
    load_pretrained,
    load_tokenizer,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN = {"n_events": 3, "pileup": 20, "seed": 0, "tracks": "10:30"}
VAL = {"n_events": 2, "pileup": 20, "seed": 1, "tracks": "10:30"}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("doublet_pretrain_data")


def tiny(root, **sections) -> dict:
    cfg = {
        "model": {"preset": "tiny", "backend": "packed", "doublet": {"token_hidden": 16},
                  "graph": {"min_pair_doublets": 5}},
        "mask": {"target": "features"},
        "data": {"tokens": "doublets", "train": dict(TRAIN), "val": dict(VAL), "root": str(root)},
        "train": {"steps": 6, "batch_size": 2, "lr": 3e-3, "warmup_steps": 2, "eval_every": 3, "checkpoint_every": 3,
                  "device": "cpu", "num_threads": 1},
    }
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


@pytest.fixture(scope="module")
def finished(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain_doublets") / "run"
    return out, pretrain(tiny(data_root), out, progress=False)


def test_doublet_samples_of_a_tiny_event(data_root):
    folder = dataset_folder(resolve_pretrain_config(tiny(data_root))["data"]["train"], data_root, progress=False)
    builder = fit_doublet_builder(folder, {"min_pair_doublets": 5}, n_events=3)
    samples = doublet_samples(folder, builder, n_events=1, cluster_size=16)
    assert len(samples) == 1
    s = samples[0]
    from trackstudy.data.io import find_events, read_event, select_volumes

    eid, prefix = find_events(folder)[0]
    hits = select_volumes(read_event(prefix, eid, parts=("hits",))).hits.reset_index(drop=True)
    g = build_graph(builder, hits)
    n = g["edge_index"].shape[1]
    assert n > 16 and s["x"].shape == (n, len(TOKEN_FEATURES)) == (n, 20) and s["x"].dtype == np.float32
    src, dst = g["edge_index"]
    np.testing.assert_array_equal(s["x"][:, :6], g["x"][src])
    np.testing.assert_array_equal(s["x"][:, 6:12], g["x"][dst])
    np.testing.assert_array_equal(s["x"][:, 12:], g["edge_attr"])
    assert s["eta"].shape == s["phi"].shape == s["cluster"].shape == (n,)
    assert 1 < len(np.unique(s["cluster"])) <= n
    one = doublet_samples(folder, builder, n_events=1, cluster_size=0)[0]
    assert set(np.unique(one["cluster"])) == {0}


def test_a_tiny_doublet_run(finished):
    out, s = finished
    for name in ("config.yaml", DOUBLET_GRAPH_FILE, PRETRAINED_FILE, "checkpoints/last.pt", "summary.json"):
        assert (out / name).is_file(), name
    assert not (out / TOKENIZER_FILE).exists()
    assert s["tokens"] == "doublets" and s["target"] == "features" and s["steps"] == 6
    assert s["data"]["n_tokens"] > 100 and s["data"]["n_hits"] is None and s["data"]["n_events"] == 3
    v = s["validation"]
    assert np.isfinite(v["val_loss"]) and v["val_loss"] > 0 and 0 <= v["val_phi_error_rad"] <= np.pi
    _, obj = load_pretrained(out)
    cfg = obj["model_config"]
    assert cfg["tokens"] == "doublets" and cfg["token_features"] == list(TOKEN_FEATURES) and cfg["token_hidden"] == 16
    assert any(k.startswith("token_mlp.") for k in obj["state_dict"])


def test_resume_equals_an_uninterrupted_run(data_root, tmp_path, finished):
    out, _ = finished
    half = tmp_path / "half"

    def stop_at_4(step, row):
        if step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(tiny(data_root), half, progress=False, on_step=stop_at_4)
    pretrain(tiny(data_root), half, resume=True, progress=False)
    a = torch.load(out / PRETRAINED_FILE, weights_only=True)["state_dict"]
    b = torch.load(half / PRETRAINED_FILE, weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def _doublet_model(preset="tiny", token_hidden=16, **encoder):
    enc = EncoderConfig.preset(preset, n_features=len(TOKEN_FEATURES), **encoder)
    return DoubletTransformer(enc, DoubletConfig(token_hidden=token_hidden))


def test_a_doublet_model_starts_from_the_pretrained_encoder_and_token_mlp(finished):
    out, _ = finished
    model = _doublet_model()
    classifier = model.classifier.weight.detach().clone()
    info = init_doublet(model, out)
    assert info["token_mlp"] and info["step"] == 6
    state = load_pretrained(out)[1]["state_dict"]
    for k, v in encoder_state(state).items():
        assert torch.equal(model.encoder.state_dict()[k], v), k
    for k, v in model.token_mlp.state_dict().items():
        assert torch.equal(state[f"token_mlp.{k}"], v), k
    assert torch.equal(model.classifier.weight, classifier)
    # another token MLP width: the encoder loads, the token MLP stays fresh
    other = _doublet_model(token_hidden=8)
    before = {k: v.clone() for k, v in other.token_mlp.state_dict().items()}
    info = init_doublet(other, out)
    assert not info["token_mlp"] and info["token_hidden"] == 16
    assert all(torch.equal(before[k], v) for k, v in other.token_mlp.state_dict().items())
    for k, v in encoder_state(state).items():
        assert torch.equal(other.encoder.state_dict()[k], v), k


def test_mismatches_name_what_differs(finished, tmp_path):
    out, _ = finished
    with pytest.raises(ConfigError, match=r"encoder shapes differ: .*\(d_model=32, .*\(d_model=64"):
        init_doublet(_doublet_model("small", n_heads=2), out)
    with pytest.raises(ConfigError, match="n_heads=2, this model 4"):
        init_doublet(_doublet_model(n_heads=4), out)
    with pytest.raises(ConfigError, match="data.tokens differs: pretrained on doublets tokens, this is a hit-token"):
        init_encoder(build_model("contrastive", "tiny"), out)
    # a hit-token pretraining run does not start a doublet model
    hits = MaskedHitModel(EncoderConfig.preset("tiny", n_features=7), mask_cfg=MaskConfig(target="features"))
    (tmp_path / "hits").mkdir()
    torch_save_atomic({"model_config": hits.config_dict(), "state_dict": hits.state_dict(), "step": 1},
                      tmp_path / "hits" / PRETRAINED_FILE)
    with pytest.raises(ConfigError, match="model.init_from .*data.tokens differs: pretrained on hits tokens, this is a "
                                          "doublet-token model"):
        init_doublet(_doublet_model(), tmp_path / "hits", where="model.init_from")
    # the run config's model section: checked as trackstudy train --init-from does
    check_init_from({"family": "doublet", "preset": "tiny", "encoder": {}}, out)
    with pytest.raises(ConfigError, match="--init-from .*encoder shapes differ"):
        check_init_from({"family": "doublet", "preset": "small", "encoder": {}}, out)


def test_fine_tune_a_doublet_model(data_root, finished, tmp_path):
    out, _ = finished
    cfg = {"model": {"family": "doublet", "preset": "tiny", "backend": "packed", "doublet": {"token_hidden": 16},
                     "graph": {"min_pair_doublets": 5}, "init_from": str(out)},
           "data": {"train": dict(TRAIN), "val": dict(VAL), "root": str(data_root)},
           "train": {"steps": 2, "batch_size": 2, "eval_every": 2, "checkpoint_every": 2, "device": "cpu",
                     "num_threads": 1, "eval_tracks": 0, "restore_best": False, "flush_denormal": True},
           "tune": {"n_events": 0}}
    s = train(copy.deepcopy(cfg), tmp_path / "ft", progress=False)
    assert s["init_from"]["token_mlp"] and s["init_from"]["step"] == 6
    cfg["model"]["preset"] = "small"
    with pytest.raises(ConfigError, match="model.init_from .*encoder shapes differ"):
        train(cfg, tmp_path / "ft_small", progress=False)


@pytest.mark.parametrize("change, match", [
    ({"mask": {"target": "codes"}, "tokenizer": {"steps": 0}}, "tokenizer.steps: must be >= 1 when mask.target is"),
    ({"model": {"features": {"z_scale": 500.0}}}, "model.features: given"),
    ({"model": {"graph": {"method": "metric"}}}, "model.graph.method"),
    ({"model": {"doublet": {"width": 3}}}, "model.doublet.width"),
    ({"data": {"sequences": "cluster"}}, "model.doublet.cluster_size"),
    ({"data": {"real": ["mini"], "train": {"n_events": 0}}}, "data.graph_fit"),
    ({"data": {"tokens": "triplets"}}, "data.tokens"),
    ({"data": {"tokens": "hits"}, "mask": {"target": "features"}}, "model.doublet: given but data.tokens is 'hits'"),
])
def test_config_errors_name_the_key(change, match):
    cfg = {"model": {"doublet": {"token_hidden": 16}}, "mask": {"target": "features"}, "tokenizer": {},
           "data": {"tokens": "doublets", "train": {"n_events": 2}, "val": {"n_events": 1}}}
    for k, v in change.items():
        for kk, vv in v.items():
            if isinstance(vv, dict) and isinstance(cfg.get(k, {}).get(kk), dict):
                cfg[k][kk].update(vv)
            else:
                cfg.setdefault(k, {})[kk] = vv
    with pytest.raises(ConfigError, match=match):
        resolve_pretrain_config(cfg)


def test_real_hits_as_doublet_tokens(data_root, tmp_path):
    # real hits without truth: the builder is fitted on the simulated events of data.graph_fit
    cfg = tiny(data_root, data={"tokens": "doublets", "real": ["mini"], "train": {"n_events": 0},
                                "graph_fit": dict(TRAIN), "val": dict(VAL), "root": str(data_root)},
               train={"steps": 2, "eval_every": 2, "checkpoint_every": 2, "batch_size": 1})
    cfg["model"]["doublet"]["cluster_size"] = 64
    cfg["data"]["sequences"] = "cluster"
    s = pretrain(cfg, tmp_path / "real", progress=False)
    assert s["steps"] == 2 and s["data"]["sources"][0].endswith("mini") and s["data"]["n_sequences"] > 1
    assert s["data"]["graph_fit"].endswith(f"n{TRAIN['n_events']}-s{TRAIN['seed']}-v2")
    assert np.isfinite(s["validation"]["val_loss"])


def test_doublet_codes_as_the_target(data_root, tmp_path):
    cfg = tiny(data_root, mask={"target": "both"},
               tokenizer={"codebook_size": 16, "steps": 30, "batch_hits": 256, "hidden": 16})
    cfg["train"].update({"steps": 4, "eval_every": 2, "checkpoint_every": 2})
    out = tmp_path / "codes"
    s = pretrain(cfg, out, progress=False)
    assert (out / TOKENIZER_FILE).is_file() and (out / "log_tokenizer.csv").is_file()
    t = s["tokenizer"]
    assert t["tokens"] == "doublets" and t["codebook_size"] == 16 and t["used"] + t["dead"] == 16
    assert 1 <= t["perplexity"] <= 16 and t["n_hits"] > 0  # n_hits: tokens, here doublets
    for key in ("r_in_mm", "z_out_mm", "xyz_in_mm", "phi_in_rad", "dphi_rad", "dz_mm", "z0_mm", "deta",
                "curvature_per_mm", "layer_in_layers"):
        assert np.isfinite(t[key]) and t[key] >= 0, key
    assert 0 <= t["dphi_rad"] <= np.pi
    v = s["validation"]
    assert 0 <= v["val_code_accuracy"] <= 1 and np.isfinite(v["val_ce"]) and np.isfinite(v["val_mse"])
    tok, measures = load_tokenizer(out)
    assert isinstance(tok, DoubletTokenizer) and measures["used"] == t["used"]
    _, obj = load_pretrained(out)
    assert obj["model_config"]["n_codes"] == 16 and obj["model_config"]["tokens"] == "doublets"
    torch.load(out / TOKENIZER_FILE, weights_only=True)
    # the tokenizer is read back on resume, not trained again
    before = (out / TOKENIZER_FILE).stat().st_mtime_ns
    cfg["train"]["steps"] = 6
    s2 = pretrain(cfg, out, resume=True, progress=False)
    assert s2["steps"] == 6 and (out / TOKENIZER_FILE).stat().st_mtime_ns == before
    assert s2["tokenizer"]["used"] == t["used"]
    # the encoder still starts a doublet-token model
    assert init_doublet(_doublet_model(), out)["token_mlp"]
