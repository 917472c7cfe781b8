"""The edge filter before the edge model: its threshold, its config, the pruned graphs, and a GNN
run with it end to end (the filter trained once, stored in model.pt, applied by the run's builder,
exact resume)."""

from __future__ import annotations

import copy
import csv

import numpy as np
import pytest
import torch

from trackstudy.data.io import iter_events
from trackstudy.errors import ConfigError
from trackstudy.graphs.edge_filter import FilterConfig, filter_threshold
from trackstudy.graphs.module_map import GraphConfig, build_graph
from trackstudy.models.gnn import EdgeFilter, FilteredGraphBuilder, InteractionNetwork, gnn_from_config
from trackstudy.training import load_run, resolve_config, train
from trackstudy.training.data import dataset_folder
from trackstudy.training.edge_filter import prune_sample
from trackstudy.training.gnn import graph_sample

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("filter_data")


def filter_run_config(root, family="gnn", **filter_cfg) -> dict:
    model = {"family": family, "graph": {"min_pair_doublets": 5, "filter": {"hidden": 16, "layers": 2, "steps": 6,
                                                                            "batch_edges": 64, **filter_cfg}}}
    if family == "gnn":
        model["gnn"] = {"hidden": 16, "n_iterations": 2}
    else:
        model.update(preset="tiny", doublet={"token_hidden": 16})
    return {
        "model": model,
        "data": {"train": {"n_events": 4, "pileup": 20, "seed": 0, "tracks": "10:30"},
                 "val": {"n_events": 2, "pileup": 20, "seed": 1, "tracks": "10:30"}, "root": str(root)},
        "train": {"steps": 8, "batch_size": 2, "lr": 3e-3, "warmup_steps": 2, "eval_every": 4, "checkpoint_every": 4,
                  "device": "cpu", "num_threads": 1},
        "tune": {"n_events": 2, "grid": {"threshold": [0.3, 0.6], "method": ["components"]}},
    }


def test_threshold_keeps_the_requested_fraction():
    s = [0.4, 0.1, 0.3, 0.2]
    assert filter_threshold(s, 1.0) == 0.1  # everything
    assert filter_threshold(s, 0.75) == 0.2  # 3 of 4: 0.2, 0.3, 0.4
    assert filter_threshold(s, 0.5) == 0.3  # 2 of 4
    assert filter_threshold(s, 0.6) == 0.2  # ceil(2.4) = 3 of 4: never fewer than asked
    assert filter_threshold([], 0.9) == 0.0


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="model.graph.filter.efficiency"):
        FilterConfig(efficiency=0.0)
    with pytest.raises(ConfigError, match="model.graph.filter.threshold"):
        FilterConfig(threshold=1.0)
    with pytest.raises(ConfigError, match="model.graph.filter.batch_edges"):
        FilterConfig(batch_edges=-1)
    with pytest.raises(ConfigError, match="unknown config key 'model.graph.filter.width'"):
        GraphConfig.from_dict({"filter": {"width": 8}})
    assert GraphConfig.from_dict({"filter": {}}).filter == FilterConfig()
    assert "filter" not in GraphConfig().to_dict() and GraphConfig(filter={}).to_dict()["filter"]["hidden"] == 64


def test_prune_sample_keeps_the_labels_with_their_edges():
    # 4 candidates: 0 true (pT 2 GeV), 1 fake, 2 true (pT 0.5 GeV), 3 true (pT 1.5 GeV)
    s = {"x": torch.zeros(5, 6), "edge_index": torch.tensor([[0, 0, 1, 2], [1, 2, 3, 4]]),
         "edge_attr": torch.arange(32, dtype=torch.float32).reshape(4, 8), "y": torch.tensor([1.0, 0.0, 1.0, 1.0]),
         "pt": torch.tensor([2.0, 0.0, 0.5, 1.5]), "curvature": np.array([0.1, 0.2, 0.3, 0.4]),
         "stats": {"n_hits": 5, "n_edges": 4, "n_true": 3, "n_true_pt": 2, "n_found_pt": 2}}
    p = prune_sample(s, np.array([True, False, True, False]), 0.9)
    assert p["edge_index"].tolist() == [[0, 1], [1, 3]] and p["y"].tolist() == [1.0, 1.0]
    assert p["pt"].tolist() == [2.0, 0.5] and p["curvature"].tolist() == [0.1, 0.3]
    torch.testing.assert_close(p["edge_attr"], s["edge_attr"][[0, 2]])
    # the 1.5 GeV doublet is lost: 1 of the 2 true doublets above 0.9 GeV remains
    assert p["stats"] == {"n_hits": 5, "n_edges": 2, "n_true": 2, "n_true_pt": 2, "n_found_pt": 1}


def test_filter_scores_in_chunks_equal_one_pass(monkeypatch):
    torch.manual_seed(0)
    f = EdgeFilter(FilterConfig(hidden=8, layers=2)).eval()
    x, ei, ea = torch.randn(30, 6), torch.randint(0, 30, (2, 50)), torch.randn(50, 8)
    whole = f.scores(x, ei, ea)
    monkeypatch.setattr(EdgeFilter, "CHUNK", 7)
    np.testing.assert_allclose(f.scores(x, ei, ea), whole, rtol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(whole, torch.sigmoid(f(x, ei, ea)).double().numpy(), rtol=1e-6)
    f.threshold.fill_(float(np.median(whole)))
    assert f.keep(x, ei, ea).sum() == (whole >= np.median(whole)).sum()


def read_log(path):
    with open(path, newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_gnn_run_with_a_filter(root, tmp_path):
    cfg = filter_run_config(root, efficiency=0.9)
    summary = train(cfg, tmp_path / "run", progress=False)
    info = summary["graph"]["filter"]
    assert info["steps"] == 6 and info["tuned"] and 0.0 < info["threshold"] < 1.0
    assert info["val_edges_after"] < info["val_edges_before"]
    assert info["val_efficiency_pt"] >= 0.9  # the threshold keeps at least the requested fraction
    assert summary["graph"]["val"]["edges_per_event"] == pytest.approx(info["val_edges_after"])
    model, _ = load_run(tmp_path / "run", "cpu")
    assert isinstance(model.builder, FilteredGraphBuilder) and float(model.edge_filter.threshold) == info["threshold"]
    # the stored builder rebuilds the pruned graphs the edge model trained on
    ev = next(iter_events(dataset_folder(resolve_config(cfg)["data"]["val"], root)))
    assert graph_sample(model.builder, ev)["stats"]["n_edges"] < graph_sample(model.base_builder, ev)["stats"]["n_edges"]
    unfiltered = build_graph(model.base_builder, ev.hits.loc[ev.hits.volume_id.isin([7, 8, 9])])
    keep = model.edge_filter.keep(unfiltered["x"], unfiltered["edge_index"], unfiltered["edge_attr"])
    filtered = build_graph(model.builder, ev.hits.loc[ev.hits.volume_id.isin([7, 8, 9])])
    np.testing.assert_array_equal(filtered["edge_index"], unfiltered["edge_index"][:, keep])
    # the model config rebuilds the filter; its weights are not the edge model's parameters
    fresh = gnn_from_config(model.config_dict())
    assert isinstance(fresh.edge_filter, EdgeFilter)
    fresh.load_state_dict(model.state_dict())
    n_edge_model = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("edge_filter."))
    assert summary["n_params"] == n_edge_model
    assert InteractionNetwork().edge_filter is None and "filter" not in InteractionNetwork().config_dict()


def test_resume_with_a_filter_equals_an_uninterrupted_run(root, tmp_path):
    cfg = filter_run_config(root)
    full = train(copy.deepcopy(cfg), tmp_path / "full", progress=False)

    def stop(step, row):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(copy.deepcopy(cfg), tmp_path / "part", progress=False, on_step=stop)
    resumed = train(copy.deepcopy(cfg), tmp_path / "part", resume=True, progress=False)
    assert resumed["steps"] == full["steps"] == 8
    assert resumed["graph"]["filter"]["threshold"] == full["graph"]["filter"]["threshold"]
    np.testing.assert_allclose(read_log(tmp_path / "part" / "log_steps.csv"),
                               read_log(tmp_path / "full" / "log_steps.csv"), rtol=1e-5)
    sa = torch.load(tmp_path / "full" / "model.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "part" / "model.pt", weights_only=True)["state_dict"]
    for k in sa:
        torch.testing.assert_close(sb[k], sa[k], rtol=1e-5, atol=1e-6)


def test_doublet_run_with_a_filter(root, tmp_path):
    summary = train(filter_run_config(root, family="doublet"), tmp_path / "run", progress=False)
    assert summary["family"] == "doublet" and summary["graph"]["filter"]["steps"] == 6
    model, _ = load_run(tmp_path / "run", "cpu")
    assert isinstance(model.builder, FilteredGraphBuilder)
