"""scripts/bench_training.py: a trained run scored on held-out events, with regions, binned
efficiencies, a baseline on the same events and a snapshot's weights."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from trackstudy.training import train

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_training.py"
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]


def _script():
    spec = importlib.util.spec_from_file_location("bench_training", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_training_heldout_with_baseline_and_snapshot(tmp_path):
    cfg = {
        "model": {"family": "contrastive", "preset": "tiny", "backend": "packed",
                  "head": {"pt_min": 0.0, "filter_weight": 1.0},
                  "features": {"names": ["x", "y", "z", "r", "sin_phi", "cos_phi", "eta", "dphi_cl", "deta_cl"]}},
        "locality": {"method": "dbscan", "params": {}, "vertex_scan": False},
        "data": {"train": {"n_events": 1, "pileup": 5, "seed": 0}, "val": {"n_events": 1, "pileup": 5, "seed": 1},
                 "root": str(tmp_path / "data"), "sequences": "cluster"},
        "train": {"steps": 4, "batch_size": 8, "batch_hits": 2048, "eval_every": 2, "checkpoint_every": 2,
                  "device": "cpu", "num_threads": 1, "eval_tracks": 1, "snapshot_minutes": [1e-6]},
        "tune": {"n_events": 1, "grid": {"threshold": [0.5, 0.9], "max_hits": [16]}},
    }
    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    snapshot = run / "checkpoints" / "at_1e-06min.pt"
    assert snapshot.is_file()  # train.snapshot_minutes: kept when the training time passed it
    mod = _script()
    assert mod.main([str(config), "--out", str(run), "--no-train", "--events", "1", "--seed", "77",
                     "--baseline", "dbscan-helix"]) == 0
    report = json.loads((run / "heldout.json").read_text())
    assert 0.0 <= report["dm_efficiency"] <= 1.0 and "barrel_dm_efficiency" in report
    pt_bins = report["binned"]["pt"]
    assert pt_bins and all({"low", "high", "eff", "err_low", "err_high", "n_total"} <= set(r) for r in pt_bins)
    assert report["baseline"]["method"] == "dbscan-helix" and report["baseline"]["n_events"] == 1
    # the binned tables count the same reconstructable particles
    assert sum(r["n"] for r in report["dm_by_hits"]) == sum(r["n"] for r in report["dm_by_vertex_z"]) > 0
    # where the missed particles were lost: fractions of every reconstructable particle, summing to 1
    reasons = {r["region"]: r for r in report["miss_reasons"]}
    assert "all" in reasons and reasons["all"]["n"] >= 1
    assert sum(reasons["all"][k] for k in ("found", "locality", "embedding", "merged", "track formation")) == \
        pytest.approx(1.0)
    assert report["n_events"] == 1 and reasons["all"]["found"] == pytest.approx(report["dm_efficiency"])  # one event
    assert mod.main([str(config), "--out", str(run), "--no-train", "--events", "1", "--seed", "77",
                     "--weights", str(snapshot), "--threads", "1"]) == 0
    with pytest.raises(SystemExit, match="--threads: must be >= 0"):
        mod.main([str(config), "--out", str(run), "--no-train", "--threads", "-1"])
    snap = json.loads((run / "heldout_at_1e-06min.json").read_text())
    assert snap["weights_step"] >= 1 and snap["weights_train_seconds"] > 0
    # barrel views over the same weights: their own report and submission, the views in the locality
    assert mod.main([str(config), "--out", str(run), "--no-train", "--events", "1", "--seed", "77",
                     "--barrel-views=-10,0,10"]) == 0
    views = json.loads((run / "heldout_views3.json").read_text())
    assert views["locality"]["barrel_views"] == [-10.0, 0.0, 10.0] and (run / "heldout_views3.csv").is_file()
    assert 0.0 <= views["dm_efficiency"] <= 1.0 and views["n_events"] == 1
    assert views["locality"]["view_frame"] is False
    # the same views in their own frames: their own report
    assert mod.main([str(config), "--out", str(run), "--no-train", "--events", "1", "--seed", "77",
                     "--barrel-views=-10,0,10", "--view-frame"]) == 0
    assert json.loads((run / "heldout_views3_frame.json").read_text())["locality"]["view_frame"] is True
    assert mod.main([str(config), "--out", str(run), "--no-train", "--events", "1", "--seed", "77",
                     "--barrel-views=-10,0,10", "--view-frame", "both"]) == 0
    assert json.loads((run / "heldout_views3_bothframes.json").read_text())["locality"]["view_frame"] == "both"
    # without the run's track-quality scorer: its own report; with none in the run the report says so
    assert views["track_quality"] is None
    assert mod.main([str(config), "--out", str(run), "--no-train", "--events", "1", "--seed", "77",
                     "--no-quality"]) == 0
    assert json.loads((run / "heldout_noquality.json").read_text())["track_quality"] is None
    with pytest.raises(SystemExit, match="--barrel-views 'x'"):
        mod.main([str(config), "--out", str(run), "--no-train", "--barrel-views", "x"])
