"""scripts/bench_pretraining.py answers --help as a fresh process (its work is the label-efficiency
study, tested in tests/study/test_pretraining_study.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_help():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_pretraining.py"), "--help"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:")
    for option in ("--n-labelled", "--minutes", "--steps", "--base-config", "--events"):
        assert option in proc.stdout


def test_bad_inits_names_the_option():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_pretraining.py"),
                           "params/bench/pretrain_smoke.yaml", "--inits", "scratch,finetuned"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 2
    assert "--inits" in proc.stderr and "finetuned" in proc.stderr


def _load_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_pretraining", ROOT / "scripts" / "bench_pretraining.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scratch_arm_alone_skips_pretraining_and_passes_full_events(tmp_path, monkeypatch):
    """One arm per process (the other core pretrains meanwhile): --inits scratch never pretrains,
    --tracks all reaches the held-out and labelled events as full events, and the table is
    written under the arm's own name."""
    import pandas as pd

    bench = _load_script()
    calls = {}

    def no_pretraining(*args, **kwargs):
        raise AssertionError("the scratch arm must not pretrain")

    def held_out(n_events, pileup, seed, **kwargs):
        calls["held"] = (n_events, pileup, seed, kwargs["tracks"])
        return tmp_path / "held"

    def curve(pretrain_dir, eval_data, **kwargs):
        calls["curve"] = kwargs
        return pd.DataFrame([{"n_labelled": kwargs["n_labelled"][0], "init": "scratch", "dm_efficiency": 0.9,
                              "trackml_score": 0.8, "fake_rate": 0.01, "dm_efficiency_base": 0.85,
                              "trackml_score_base": 0.7, "fake_rate_base": 0.02, "steps": 5, "train_seconds": 1.0}])

    monkeypatch.setattr(bench, "RUNS_DIR", tmp_path)
    monkeypatch.setattr(bench, "pretrain_run", no_pretraining)
    monkeypatch.setattr(bench, "ensure_simulated", held_out)
    monkeypatch.setattr(bench, "label_efficiency", curve)
    assert bench.main(["params/bench/pretrain_smoke.yaml", "--inits", "scratch", "--tracks", "all",
                       "--pileup", "20", "--n-labelled", "10", "--events", "3", "--prefix", "le"]) == 0
    assert calls["held"] == (3, 20.0, 1001, None)
    assert calls["curve"]["inits"] == ("scratch",) and calls["curve"]["tracks"] is None
    assert (tmp_path / "le_scratch.json").is_file() and not (tmp_path / "le.json").exists()
    # a later invocation adds its N to the table and replaces only the row of its own N and arm
    assert bench.main(["params/bench/pretrain_smoke.yaml", "--inits", "scratch", "--tracks", "all",
                       "--pileup", "20", "--n-labelled", "30,10", "--events", "3", "--prefix", "le"]) == 0
    rows = json.loads((tmp_path / "le_scratch.json").read_text())["rows"]
    assert sorted(r["n_labelled"] for r in rows) == [10, 30]
