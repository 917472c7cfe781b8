"""scripts/probe_edge_heads.py: each edge scorer fitted to one tiny event's graph, the loss
curve printed and falling, errors that name the option."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from trackstudy.training import resolve_config, train
from trackstudy.training.data import dataset_folder

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load():
    spec = importlib.util.spec_from_file_location("_probe_edge_heads", ROOT / "scripts" / "probe_edge_heads.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gnn_run(tmp_path_factory):
    """A tiny GNN run (its builder makes the graph), its validation events and a hit-token config."""
    root = tmp_path_factory.mktemp("probe")
    cfg = {"model": {"family": "gnn", "gnn": {"hidden": 8, "n_iterations": 1}, "graph": {"min_pair_doublets": 5}},
           "data": {"train": {"n_events": 2, "pileup": 20, "seed": 0, "tracks": "10:30"},
                    "val": {"n_events": 1, "pileup": 20, "seed": 1, "tracks": "10:30"}, "root": str(root)},
           "train": {"steps": 1, "batch_size": 1, "eval_every": 1, "device": "cpu", "num_threads": 1},
           "tune": {"n_events": 1, "grid": {"threshold": [0.5], "method": ["components"]}}}
    train(cfg, root / "run", progress=False)
    hits = {"model": {"family": "doublet", "preset": "tiny", "backend": "packed",
                      "doublet": {"tokens": "hits", "token_hidden": 16, "cluster_size": 16}}}
    (root / "hits.yaml").write_text(yaml.safe_dump(hits))
    return {"run": str(root / "run"), "data": str(dataset_folder(resolve_config(cfg)["data"]["val"], root)),
            "hits": str(root / "hits.yaml")}


def test_fits_each_model_and_prints_its_curve(gnn_run, capsys):
    rc = load().main(["--run", gnn_run["run"], "--data", gnn_run["data"], "--hits-config", gnn_run["hits"],
                      "--steps", "6", "--every", "3", "--lr", "1e-2", "--tile-sizes", "1000000,1"])
    out = capsys.readouterr().out
    assert rc == 0
    # one tile holds every hit: every doublet in it; tiles of one hit: none
    assert "tiles of 1000000 hits: 1.0000" in out and "tiles of 1 hits: 0.0000" in out
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["model"] for r in results] == ["mlp", "gnn", "hits"]
    for r in results:
        assert [c["step"] for c in r["curve"]] == [3, 6] and r["parameters"] > 0
        assert r["curve"][-1]["loss"] < results[0]["curve"][0]["loss"] * 2  # finite, and of the loss's scale


def test_errors_name_the_option(gnn_run, capsys):
    probe = load()
    with pytest.raises(SystemExit):
        probe.main(["--run", "x", "--data", "y", "--models", "mlp,rnn"])
    assert "--models: rnn" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        probe.main(["--run", "x", "--data", "y", "--tile-sizes", "a,2"])
    assert "--tile-sizes" in capsys.readouterr().err
    rc = probe.main(["--run", gnn_run["run"] + "_nowhere", "--data", "y"])
    assert rc == 2 and "run directory not found" in capsys.readouterr().err
    rc = probe.main(["--run", gnn_run["run"], "--data", gnn_run["data"], "--hits-config", "params/bench/doublet_mu200_cpu.yaml", "--models", "hits", "--steps", "1"])
    assert rc == 2 and "this probe fits hit tokens" in capsys.readouterr().err
