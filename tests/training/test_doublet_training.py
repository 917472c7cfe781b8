"""The doublet family end to end on tiny simulated events: train -> save -> load_run -> the same
submission as the model in memory, the run's summary, config errors naming the key; with doublet
and with hit tokens."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from trackstudy.data.io import iter_events
from trackstudy.errors import ConfigError
from trackstudy.inference import predict_event
from trackstudy.training import load_run, resolve_config, train
from trackstudy.training.data import dataset_folder
from trackstudy.training.gnn import GRAPH_FILE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("doublet_data")


def doublet_config(root, **doublet) -> dict:
    return {
        "model": {"family": "doublet", "preset": "tiny", "backend": "packed", "doublet": {"token_hidden": 16, **doublet},
                  "graph": {"min_pair_doublets": 5}},
        "data": {"train": {"n_events": 3, "pileup": 20, "seed": 0, "tracks": "10:30"},
                 "val": {"n_events": 2, "pileup": 20, "seed": 1, "tracks": "10:30"}, "root": str(root)},
        "train": {"steps": 6, "batch_size": 2, "lr": 3e-3, "warmup_steps": 2, "eval_every": 3, "checkpoint_every": 3,
                  "device": "cpu", "num_threads": 1, "eval_tracks": 1},
        "tune": {"n_events": 2, "grid": {"threshold": [0.3, 0.6], "method": ["components"]}},
    }


def test_train_save_reload_predict(root, tmp_path):
    cfg = doublet_config(root, cluster_size=32)
    summary = train(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for f in ("config.yaml", "model.pt", "checkpoints/last.pt", "summary.json", GRAPH_FILE):
        assert (run / f).is_file(), f
    assert summary["family"] == "doublet" and summary["steps"] == 6
    assert summary["preset"] == "tiny, tiles of 32" and summary["backend"] == "packed"
    assert summary["track_params"]["kind"] == "gnn" and len(summary["tuning"]) == 2
    model, run_config = load_run(run, "cpu")
    assert model.family == "doublet" and model.encoder_cfg.attention == "packed"
    assert model.track_params.threshold == summary["track_params"]["threshold"]
    data = dataset_folder(resolve_config(cfg)["data"]["val"], root)
    event = next(iter_events(data, parts=("hits",)))
    reloaded, t = predict_event(model, event.hits, event_id=event.event_id, locality=run_config["locality"])
    assert t["n_edges"] > 0 and t["edge_classification"] > 0
    # the same weights through the dense backend: the same tracks (exact backends)
    dense, _ = load_run(run, "cpu", backend="dense")
    assert dense.encoder_cfg.attention == "dense"
    again, _ = predict_event(dense, event.hits, event_id=event.event_id, locality=run_config["locality"])
    pd.testing.assert_frame_equal(reloaded, again)
    again, _ = predict_event(model, event.hits, event_id=event.event_id, locality=run_config["locality"],
                             backend="explicit")
    pd.testing.assert_frame_equal(reloaded, again)


def test_in_memory_model_equals_the_saved_one(root, tmp_path):
    import torch

    from trackstudy.training import gnn as tgnn

    kept = {}
    original = tgnn.save_model

    def keep(run_dir, model, run_config, step=0):
        kept["model"] = copy.deepcopy(model).eval()
        return original(run_dir, model, run_config, step)

    tgnn.save_model = keep
    try:
        train(doublet_config(root), tmp_path / "run", progress=False)
    finally:
        tgnn.save_model = original
    model, run_config = load_run(tmp_path / "run", "cpu")
    data = dataset_folder(resolve_config(doublet_config(root))["data"]["val"], root)
    event = next(iter_events(data, parts=("hits",)))
    a, _ = predict_event(kept["model"], event.hits, event_id=event.event_id, locality=run_config["locality"])
    b, _ = predict_event(model, event.hits, event_id=event.event_id, locality=run_config["locality"])
    pd.testing.assert_frame_equal(a, b)
    for k, v in kept["model"].state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k


def test_config_errors_name_the_key(root):
    cfg = doublet_config(root)
    for section, key, value, match in (("doublet", "width", 3, "model.doublet.width"),
                                       ("doublet", "cluster_size", -1, "model.doublet.cluster_size"),
                                       ("graph", "efficiency", 2.0, "model.graph.efficiency")):
        bad = copy.deepcopy(cfg)
        bad["model"][section][key] = value
        with pytest.raises(ConfigError, match=match):
            resolve_config(bad)
    bad = copy.deepcopy(cfg)
    bad["model"]["backend"] = "nope"
    with pytest.raises(ConfigError, match="model.backend"):
        resolve_config(bad)
    bad = copy.deepcopy(cfg)
    bad["model"]["gnn"] = {"hidden": 8}
    with pytest.raises(ConfigError, match="model.gnn: given but model.family is 'doublet'"):
        resolve_config(bad)
    bad = copy.deepcopy(cfg)
    bad["model"]["family"] = "contrastive"
    with pytest.raises(ConfigError, match="model.doublet: given but model.family is 'contrastive'"):
        resolve_config(bad)
    bad = copy.deepcopy(cfg)
    bad["model"]["graph"]["method"] = "metric"
    with pytest.raises(ConfigError, match="model.graph.method: 'metric' builds the graphs of the gnn family"):
        resolve_config(bad)
    ok = copy.deepcopy(cfg)
    ok["model"]["init_from"] = "runs/somewhere"  # a doublet-token pretraining run (checked when training starts)
    assert resolve_config(ok)["model"]["init_from"] == "runs/somewhere"
    ok["model"]["family"], ok["model"]["doublet"] = "gnn", {}
    with pytest.raises(ConfigError, match="model.init_from: .*gnn has none"):
        resolve_config(ok)
    assert resolve_config(cfg)["tune"]["grid"] == [{"threshold": [0.3, 0.6], "method": ["components"]}]
    bad = copy.deepcopy(cfg)
    bad["model"]["doublet"]["tokens"] = "triplets"
    with pytest.raises(ConfigError, match="model.doublet.tokens"):
        resolve_config(bad)
    bad["model"]["doublet"]["tokens"], bad["model"]["init_from"] = "hits", "runs/somewhere"
    with pytest.raises(ConfigError, match="model.init_from: .*tokens: hits"):
        resolve_config(bad)


def test_a_gnn_has_no_attention_backend():
    from trackstudy.models.gnn import InteractionNetwork
    from trackstudy.postprocessing.gnn_tracks import predict_graph_event

    with pytest.raises(ConfigError, match="backend 'flex': a gnn model has no attention"):
        predict_graph_event(InteractionNetwork(), pd.DataFrame(), backend="flex")


def test_resume_equals_an_uninterrupted_run(root, tmp_path):
    import numpy as np
    import torch

    full = train(doublet_config(root), tmp_path / "full", progress=False)

    def stop(step, row):
        if step == 4:  # like Ctrl-C: the run writes a checkpoint and stops
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(doublet_config(root), tmp_path / "part", progress=False, on_step=stop)
    resumed = train(doublet_config(root), tmp_path / "part", resume=True, progress=False)
    assert resumed["steps"] == full["steps"] == 6
    a, b = (pd.read_csv(tmp_path / name / "log_steps.csv")["loss"].to_numpy() for name in ("full", "part"))
    np.testing.assert_allclose(b, a, rtol=1e-5)
    sa = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "part" / "model.pt", weights_only=True)["state_dict"]
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=1e-5, atol=1e-6)


def test_flex_trains_with_packed_on_the_cpu(root, tmp_path, capsys):
    cfg = doublet_config(root)
    cfg["model"]["backend"] = "flex"
    cfg["train"]["steps"] = 2
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["backend"] == "packed" and summary["backend_requested"] == "flex"
    assert "training with the exact 'packed' backend" in capsys.readouterr().err


def test_hit_tokens_train_save_reload_predict(root, tmp_path):
    """Batches of two events (the hits' graphs passed as node_batch), the dense backend on the
    reloaded weights gives the same tracks."""
    cfg = doublet_config(root, cluster_size=16, tokens="hits")
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["steps"] == 6 and summary["preset"] == "tiny, hit tokens, tiles of 16"
    model, run_config = load_run(tmp_path / "run", "cpu")
    assert model.cfg.tokens == "hits" and model.encoder_cfg.n_features == 8
    event = next(iter_events(dataset_folder(resolve_config(cfg)["data"]["val"], root), parts=("hits",)))
    sub, t = predict_event(model, event.hits, event_id=event.event_id, locality=run_config["locality"])
    assert t["n_edges"] > 0 and len(sub) == len(event.hits)
    dense, _ = load_run(tmp_path / "run", "cpu", backend="dense")
    again, _ = predict_event(dense, event.hits, event_id=event.event_id, locality=run_config["locality"])
    pd.testing.assert_frame_equal(sub, again)
