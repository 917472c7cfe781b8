"""DistributedDataParallel on the CPU: ``torchrun --nproc-per-node 2 -m trackstudy train`` with gloo
completes, only rank 0 writes the run, and the ranks' models are identical."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from trackstudy.config import PARAMS_DIR, ROOT


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "trackstudy", "train", "--config", str(PARAMS_DIR / "train_smoke.yaml"), "--out", str(out),
           "--quiet", "--set", f"data.root={tmp_path / 'data'}", "--set", "train.steps=6",
           "--set", "train.batch_size=2", "--set", "train.device=cpu", "--set", "tune.n_events=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    assert summary["ddp"]["backend"] == "gloo"
    assert summary["ddp"]["max_param_diff"] == 0.0  # every rank holds the same model
    assert summary["steps"] == 6
    obj = torch.load(out / "model.pt", weights_only=True)
    assert obj["step"] == 6
    # rank 0 alone wrote the logs: one row per step
    rows = (out / "log_steps.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6
    assert not [p for p in out.rglob("*.tmp")]
