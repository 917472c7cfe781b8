"""The GNN family end to end: train -> predict -> evaluate on tiny simulated events, the run
folder, exact resume, config errors naming the key."""

from __future__ import annotations

import copy
import csv

import numpy as np
import pandas as pd
import pytest
import torch

from trackstudy.bench.latency import format_result, measure_latency
from trackstudy.cli import main as cli_main
from trackstudy.data.io import iter_events
from trackstudy.errors import ConfigError
from trackstudy.graphs.module_map import GraphBuilder
from trackstudy.inference import predict_events
from trackstudy.metrics import evaluate_submission_file
from trackstudy.postprocessing.gnn_tracks import GNN_STAGES
from trackstudy.study.misses import EDGE_REASONS, captured_misses, event_misses, miss_stages
from trackstudy.training import load_run, resolve_config, train
from trackstudy.training.data import dataset_folder
from trackstudy.training.gnn import GRAPH_FILE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("gnn_data")


def gnn_config(root, **train) -> dict:
    return {
        "model": {"family": "gnn", "gnn": {"hidden": 16, "n_iterations": 2}, "graph": {"min_pair_doublets": 5}},
        "data": {"train": {"n_events": 4, "pileup": 20, "seed": 0, "tracks": "10:30"},
                 "val": {"n_events": 2, "pileup": 20, "seed": 1, "tracks": "10:30"}, "root": str(root)},
        "train": {"steps": 8, "batch_size": 2, "lr": 3e-3, "warmup_steps": 2, "eval_every": 4, "checkpoint_every": 4,
                  "device": "cpu", "num_threads": 1, **train},
        "tune": {"n_events": 2, "grid": {"threshold": [0.3, 0.6], "method": ["components", "walk"]}},
    }


def read_log(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_predict_evaluate(root, tmp_path, capsys):
    cfg = gnn_config(root)
    summary = train(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for f in ("config.yaml", "model.pt", "checkpoints/last.pt", "log_steps.csv", "log_val.csv", "summary.json",
              GRAPH_FILE):
        assert (run / f).is_file(), f
    assert summary["family"] == "gnn" and summary["steps"] == 8
    assert summary["track_params"]["kind"] == "gnn" and summary["track_params"]["threshold"] in (0.3, 0.6)
    assert 0.9 <= summary["graph"]["val"]["edge_efficiency_pt"] <= 1.0
    assert len(summary["tuning"]) == 4
    model, run_config = load_run(run, "cpu")
    assert model.family == "gnn" and model.track_params.threshold == summary["track_params"]["threshold"]
    assert len(GraphBuilder.load(run / GRAPH_FILE).pairs) == len(model.builder.pairs)
    data = dataset_folder(resolve_config(cfg)["data"]["val"], root)
    captures = {}
    sub, timings = predict_events(model, data, locality=run_config["locality"], progress=False, captures=captures)
    for stage in ("graph_construction", "edge_classification", "track_building", "total"):
        assert (timings[stage] > 0).all(), stage
    with pytest.raises(ConfigError, match="builds its own graph"):  # barrel views are for hit-token models
        predict_events(model, data, locality={"method": "dbscan", "barrel_views": [0.0]}, progress=False)
    result = evaluate_submission_file(sub, data)
    assert result.summary["dm_efficiency"] == pytest.approx(summary["validation"]["dm_efficiency"])
    # where its misses were lost, from what the predictions kept: every reconstructable particle once
    events = list(iter_events(data))
    table = pd.concat([captured_misses(model, ev, sub[sub["event_id"] == ev.event_id], captures[ev.event_id])
                       for ev in events])
    assert set(table["reason"]) <= set(EDGE_REASONS) and "filter" not in set(table["reason"])  # no filter here
    assert (table["reason"] == "found").mean() == pytest.approx(result.summary["dm_efficiency"])
    ev = events[0]
    assert list(captures[ev.event_id]["edges"]) == ["graph", "edge classification"]
    assert miss_stages(model) == EDGE_REASONS
    first = event_misses(model, ev, locality=None)  # predicting again gives the same reasons
    pd.testing.assert_frame_equal(first, table.iloc[:len(first)].reset_index(drop=True))
    # trackstudy predict prints the stages the GNN ran, not the hit models' stages as zeros
    assert cli_main(["predict", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "sub.csv"),
                     "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "edge_classification" in printed and "encoder" not in printed
    # bench latency reports the GNN's own stages
    lat = measure_latency(model, [(e.event_id, e.hits) for e in iter_events(data, parts=("hits",))], n_runs=2,
                          warmup=0, memory=False)
    assert lat.stages == GNN_STAGES and set(lat.summary()["stages"]) == set(GNN_STAGES)
    assert "edge_classification" in format_result(lat)
    # "model only" of a GNN is its network on the graph: edge classification, not masks + encoder
    model_only = lat.summary()["model_only"]
    assert model_only["stages"] == ["edge_classification"]
    assert model_only["median_s"] == pytest.approx(float(lat.timings["edge_classification"].median()))


def test_resume_equals_an_uninterrupted_run(root, tmp_path):
    # with data.augment: the random rotations and mirrors of a resumed run are those of an uninterrupted one
    cfg = gnn_config(root)
    cfg["data"]["augment"] = True
    full = train(cfg, tmp_path / "full", progress=False)

    def stop(step, row):
        if step == 5:  # like Ctrl-C: the run writes a checkpoint and stops
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "part", progress=False, on_step=stop)
    resumed = train(cfg, tmp_path / "part", resume=True, progress=False)
    assert resumed["steps"] == full["steps"] == 8
    a = [float(r["loss"]) for r in read_log(tmp_path / "full" / "log_steps.csv")]
    b = [float(r["loss"]) for r in read_log(tmp_path / "part" / "log_steps.csv")]
    np.testing.assert_allclose(b, a, rtol=1e-5)
    # and the augmentation is applied: the same weights see other features from the first step on
    plain = []

    def first_step(step, row):
        plain.append(row["loss"])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(gnn_config(root), tmp_path / "plain", progress=False, on_step=first_step)
    assert plain[0] != pytest.approx(a[0], rel=1e-6)
    sa = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "part" / "model.pt", weights_only=True)["state_dict"]
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=1e-5, atol=1e-6)


def test_one_process_only(root, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="model.family gnn: trains on one process"):
        train(gnn_config(root), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_config_errors_name_the_key(root, tmp_path):
    cfg = gnn_config(root)
    bad = copy.deepcopy(cfg)
    bad["model"]["gnn"]["width"] = 3
    with pytest.raises(ConfigError, match="model.gnn.width"):
        resolve_config(bad)
    bad = copy.deepcopy(cfg)
    bad["model"]["graph"]["efficiency"] = 2.0
    with pytest.raises(ConfigError, match="model.graph.efficiency"):
        resolve_config(bad)
    bad = copy.deepcopy(cfg)
    bad["tune"]["base"] = {"k": 4}
    with pytest.raises(ConfigError, match="tune.base.k"):
        resolve_config(bad)
    bad = copy.deepcopy(cfg)
    bad["model"]["family"] = "contrastive"
    with pytest.raises(ConfigError, match="model.gnn: given but model.family is 'contrastive'"):
        resolve_config(bad)
    assert resolve_config(cfg)["tune"]["grid"] == [{"threshold": [0.3, 0.6], "method": ["components", "walk"]}]
