"""``trackstudy quality``: fits a run's track-quality scorer on simulated events, writes it into the
run, refuses to replace it without --force; the scorer then chooses the tracks of predict."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from trackstudy.cli import main
from trackstudy.models.heads import build_model
from trackstudy.postprocessing.quality import TrackQuality
from trackstudy.training import train
from trackstudy.training.checkpoint import load_run, save_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LOCALITY = {"method": "dbscan", "params": {}, "vertex_scan": False}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    for name, n, seed in (("fit", 2, 7), ("val", 1, 8)):
        assert main(["simulate", "--out", str(root / name), "--events", str(n), "--pileup", "5", "--seed",
                     str(seed), "--pixel-only", "--quiet"]) == 0
    return root


def _run(path):
    torch.manual_seed(0)
    model = build_model("contrastive", "tiny", encoder_overrides={"attention": "packed"}).eval()
    save_model(path, model, {"locality": LOCALITY, "data": {"train": {"pixel_only": True}}}, step=1)
    return path


def test_quality_fits_writes_and_is_used(folders, tmp_path, capsys):
    run = _run(tmp_path / "run")
    args = ["quality", "--run", str(run), "--data", str(folders / "fit"), "--val-data", str(folders / "val"),
            "--quiet"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_train_events"] == 2 and report["n_val_events"] == 1 and report["metric"] == "dm_minus_fake"
    assert 0 < report["good_fraction"] < 1 and report["n_candidates_fitted"] <= report["n_candidates"]
    table = report["table"]
    best = max(table, key=lambda row: row["dm_minus_fake"])
    assert report["threshold"] == best["threshold"]
    # a higher threshold keeps fewer candidates: DM efficiency never rises with it
    dm = [row["dm_efficiency"] for row in sorted(table, key=lambda row: row["threshold"])]
    assert all(b <= a + 1e-12 for a, b in zip(dm, dm[1:]))
    scorer = TrackQuality.load(run / "track_quality.npz")
    assert scorer.threshold == report["threshold"] and (run / "track_quality.json").is_file()
    model, _ = load_run(run, device="cpu")
    assert model.track_quality is not None and model.track_quality.threshold == scorer.threshold
    # the scorer is not replaced without --force
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--force", "--metric", "dm_efficiency"]) == 0
    out = capsys.readouterr().out
    assert "threshold on 1 events (by dm_efficiency)" in out and "<-" in out
    # variants of the track formation: stored with the scorer, named in the report
    assert main([*args, "--force", "--vary", "eps=0.1,0.3", "--vary", "min_track_pt=0", "--json",
                 "--view-frame"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["view_frame"] is True  # recorded (no views in this run: nothing moves)
    assert report["variants"] == [{"eps": 0.1, "min_track_pt": 0}, {"eps": 0.3, "min_track_pt": 0}]
    assert TrackQuality.load(run / "track_quality.npz").variants == report["variants"]
    # predict with and without it
    subs = {}
    for flag in ([], ["--no-quality"]):
        path = tmp_path / f"sub{len(flag)}.csv"
        assert main(["predict", "--run", str(run), "--data", str(folders / "val"), "--out", str(path), "--quiet",
                     *flag]) == 0
        subs[len(flag)] = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64)
    assert len(subs[0]) == len(subs[1])


def test_quality_of_a_gnn_run_pools_its_track_building_variants(folders, tmp_path, capsys):
    # the scorer reads the candidates' hits, not the model: an edge model's tracks are chosen the same way
    cfg = {"model": {"family": "gnn", "gnn": {"hidden": 8, "n_iterations": 1}, "graph": {"min_pair_doublets": 5}},
           "data": {"train": {"n_events": 2, "pileup": 5, "seed": 0, "tracks": None, "pixel_only": True},
                    "val": {"n_events": 1, "pileup": 5, "seed": 1, "tracks": None, "pixel_only": True},
                    "root": str(tmp_path / "data")},
           "train": {"steps": 2, "batch_size": 1, "eval_every": 2, "device": "cpu", "num_threads": 1},
           "tune": {"n_events": 1, "grid": {"threshold": [0.5], "method": ["components"]}}}
    run = tmp_path / "gnn"
    train(cfg, run, progress=False)
    assert main(["quality", "--run", str(run), "--data", str(folders / "fit"), "--val-data", str(folders / "val"),
                 "--vary", "threshold=0.3,0.6", "--vary", "method=components,walk", "--quiet", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["variants"]) == 4 and report["n_candidates"] > 0 and 0 <= report["good_fraction"] <= 1
    model, _ = load_run(run, device="cpu")
    assert model.track_quality.variants == report["variants"]
    subs = {}
    for flag in ([], ["--no-quality"]):
        path = tmp_path / f"gnn{len(flag)}.csv"
        assert main(["predict", "--run", str(run), "--data", str(folders / "val"), "--out", str(path), "--quiet",
                     *flag]) == 0
        subs[len(flag)] = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64)
    assert len(subs[0]) == len(subs[1]) and (subs[0][:, 1] == subs[1][:, 1]).all()
    # an unknown track-building parameter is named
    assert main(["quality", "--run", str(run), "--data", str(folders / "fit"), "--val-data", str(folders / "val"),
                 "--vary", "eps=0.1", "--force"]) == 2
    assert "GNNTrackParams has no parameter 'eps'" in capsys.readouterr().err


def test_quality_errors(folders, tmp_path, capsys):
    run = _run(tmp_path / "run")
    assert main(["quality", "--run", str(run), "--data", str(tmp_path / "nowhere"), "--val-data",
                 str(folders / "val")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["quality", "--run", str(run), "--data", str(folders / "fit"), "--val-data",
                 str(folders / "val"), "--events", "0"]) == 2
    assert "--events" in capsys.readouterr().err
    for bad, message in (("eps", "NAME=V1,V2"), ("epsilon=0.1", "no parameter 'epsilon'")):
        assert main(["quality", "--run", str(run), "--data", str(folders / "fit"), "--val-data",
                     str(folders / "val"), "--vary", bad]) == 2
        assert message in capsys.readouterr().err


def test_parse_vary_and_combinations():
    from trackstudy.errors import ConfigError
    from trackstudy.study.quality import parse_vary, vary_variants

    vary = parse_vary("eps=0.1,0.2 min_track_pt:0  method=dbscan")
    assert vary == {"eps": [0.1, 0.2], "min_track_pt": [0], "method": ["dbscan"]}
    assert parse_vary(["eps=0.1", "max_hits=12,20"]) == {"eps": [0.1], "max_hits": [12, 20]}
    assert vary_variants({"eps": [0.1, 0.2], "max_hits": [12, 20]}) == [
        {"eps": 0.1, "max_hits": 12}, {"eps": 0.1, "max_hits": 20}, {"eps": 0.2, "max_hits": 12},
        {"eps": 0.2, "max_hits": 20}]
    assert vary_variants(None) == [] and parse_vary("") == {}
    with pytest.raises(ConfigError, match="given twice"):
        parse_vary(["eps=0.1", "eps=0.2"])
    with pytest.raises(ConfigError, match="non-empty"):
        vary_variants({"eps": []})
