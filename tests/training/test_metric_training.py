"""A GNN run whose graphs come from metric learning (model.graph.method: metric): stage 1 trains
the embedding, the run stores it in model.pt (predict rebuilds the same graphs with no other
file), a resumed run reads it back instead of training it again, config errors name the key."""

from __future__ import annotations

import copy
import csv

import numpy as np
import pytest
import torch

from trackstudy.data.io import iter_events
from trackstudy.errors import ConfigError
from trackstudy.inference import predict_events
from trackstudy.metrics import evaluate_submission_file
from trackstudy.models.metric_embedding import MetricGraphBuilder
from trackstudy.training import gnn as gnn_training
from trackstudy.training import load_run, resolve_config, train
from trackstudy.training.data import dataset_folder
from trackstudy.training.gnn import GRAPH_FILE, graph_sample
from trackstudy.training.metric_embedding import embedding_sample, hard_negatives

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("metric_data")


def metric_config(root, **metric) -> dict:
    return {
        "model": {"family": "gnn", "gnn": {"hidden": 16, "n_iterations": 2},
                  "graph": {"method": "metric", "metric": {"hidden": 32, "steps": 20, "max_minutes": 0, **metric}}},
        "data": {"train": {"n_events": 4, "pileup": 20, "seed": 0, "tracks": "10:30"},
                 "val": {"n_events": 2, "pileup": 20, "seed": 1, "tracks": "10:30"}, "root": str(root)},
        "train": {"steps": 8, "batch_size": 2, "lr": 3e-3, "warmup_steps": 2, "eval_every": 4, "checkpoint_every": 4,
                  "device": "cpu", "num_threads": 1},
        "tune": {"n_events": 2, "grid": {"threshold": [0.3, 0.6], "method": ["components"]}},
    }


def read_log(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_metric_run_trains_reloads_and_predicts_the_same(root, tmp_path):
    cfg = metric_config(root)
    summary = train(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert not (run / GRAPH_FILE).exists()  # the graph lives in model.pt (embedding + radius)
    emb = summary["graph"]["embedding"]
    assert emb["steps"] == 20 and emb["tuned"] and 0 < emb["radius"] <= 2
    assert summary["graph"]["builder"]["method"] == "metric"
    assert summary["graph"]["val"]["edge_efficiency_pt"] >= 0.9
    model, run_config = load_run(run, "cpu")
    assert isinstance(model.builder, MetricGraphBuilder)
    assert model.builder.radius == pytest.approx(emb["radius"])
    data = dataset_folder(resolve_config(cfg)["data"]["val"], root)
    sub, timings = predict_events(model, data, locality=run_config["locality"], progress=False)
    assert (timings["graph_construction"] > 0).all()
    # the reloaded model builds the graphs the run trained and validated on
    assert timings["n_edges"].mean() == pytest.approx(summary["graph"]["val"]["edges_per_event"])
    result = evaluate_submission_file(sub, data)
    assert result.summary["dm_efficiency"] == pytest.approx(summary["validation"]["dm_efficiency"])
    ev = next(iter_events(data))
    g = graph_sample(model.builder, ev)
    assert g["stats"]["n_edges"] == int(timings["n_edges"].iloc[0])


def test_resume_reads_the_embedding_back(root, tmp_path, monkeypatch):
    full = train(metric_config(root), tmp_path / "full", progress=False)

    def stop(step, row):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(metric_config(root), tmp_path / "part", progress=False, on_step=stop)

    def no_second_training(*args, **kwargs):
        raise AssertionError("the embedding was trained again on resume")

    monkeypatch.setattr(gnn_training, "fit_embedding", no_second_training)
    resumed = train(metric_config(root), tmp_path / "part", resume=True, progress=False)
    assert resumed["steps"] == full["steps"] == 8
    assert resumed["graph"]["embedding"]["radius"] == pytest.approx(full["graph"]["embedding"]["radius"])
    a = [float(r["loss"]) for r in read_log(tmp_path / "full" / "log_steps.csv")]
    b = [float(r["loss"]) for r in read_log(tmp_path / "part" / "log_steps.csv")]
    np.testing.assert_allclose(b, a, rtol=1e-5)
    sa = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "part" / "model.pt", weights_only=True)["state_dict"]
    assert any(k.startswith("embedding.") for k in sa)
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=1e-5, atol=1e-6)


def test_checkpoints_hold_the_embedding_from_the_first_step(root, tmp_path):
    def stop(step, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(metric_config(root), tmp_path / "run", progress=False, on_step=stop)
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["step"] == 1 and any(k.startswith("embedding.") for k in ckpt["model"])
    assert ckpt["model_config"]["metric"]["steps"] == 20 and ckpt["embedding_info"]["steps"] == 20


def test_hard_negatives_are_near_hits_of_other_particles(root):
    data = dataset_folder(resolve_config(metric_config(root))["data"]["val"], root)
    s = embedding_sample(next(iter_events(data)), 0.9)
    x = s["x"].numpy().astype(np.float64)
    neg = hard_negatives(x, s["pid"], 4, 0, np.random.default_rng(0))
    assert len(neg) and ((s["pid"][neg[:, 0]] != s["pid"][neg[:, 1]]) | (s["pid"][neg[:, 0]] == 0)).all()
    d = np.linalg.norm(x[neg[:, 0]] - x[neg[:, 1]], axis=1)
    rand = np.linalg.norm(x[:200] - x[np.random.default_rng(1).permutation(len(x))[:200]], axis=1)
    assert np.median(d) < np.median(rand)


def test_metric_config_errors_name_the_key(root):
    cfg = metric_config(root)
    bad = copy.deepcopy(cfg)
    bad["model"]["graph"]["metric"]["k"] = 3
    with pytest.raises(ConfigError, match="model.graph.metric.k"):
        resolve_config(bad)
    bad = copy.deepcopy(cfg)
    bad["model"]["graph"]["metric"]["steps"] = 0
    with pytest.raises(ConfigError, match="model.graph.metric.steps"):
        resolve_config(bad)
    bad = copy.deepcopy(cfg)
    bad["model"]["graph"]["method"] = "windows"
    with pytest.raises(ConfigError, match="model.graph.metric: given but model.graph.method is 'windows'"):
        resolve_config(bad)
    bad = copy.deepcopy(cfg)
    bad["model"]["graph"]["method"] = "radius"
    with pytest.raises(ConfigError, match="model.graph.method"):
        resolve_config(bad)
