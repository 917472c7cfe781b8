"""The benchmark scripts in scripts/ that are not covered elsewhere: each answers --help as a fresh
process, and where that is cheap a tiny real run (in-process: the imports are already paid)."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trackstudy.bench.attention import BenchResult
from trackstudy.cli.bench import benchmark_parser

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
PY_SCRIPTS = ["bench_attention.py", "bench_doublet_tokens.py", "bench_doublets.py", "bench_locality.py", "bench_metrics.py", "bench_simulate.py",
              "bench_track_formation.py", "bench_vq_codes.py", "calibrate_simulator.py", "probe_edge_heads.py"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load(name: str):
    """The script ``scripts/<name>`` as a module (its main not run)."""
    spec = importlib.util.spec_from_file_location(f"_script_{Path(name).stem}", SCRIPTS / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", PY_SCRIPTS)
def test_help(name):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPTS / name), "--help"], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:") and "--help" in proc.stdout


def test_bench_attention_tiny_run(capsys):
    script = load("bench_attention.py")
    rc = script.main(["--hits", "120", "150", "--cluster-size", "12", "--heads", "2", "--head-dim", "8",
                      "--backends", "dense,explicit", "--repeats", "1", "--threads", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "== 120 hits, mean cluster size 12" in out and "== 150 hits" in out
    assert out.count("[ok] dense: max |diff|") == 2 and "FAIL" not in out
    # an option of the CLI is checked by the CLI's own checks
    assert script.main(["--hits", "100", "--heads", "0"]) == 2
    assert "--heads must be positive" in capsys.readouterr().err


def test_bench_attention_checks():
    check_targets = load("bench_attention.py").check_targets
    results = [BenchResult("dense", 1.0, 10.0, 1e-7), BenchResult("packed", 0.5, 1.0, 2e-4),
               BenchResult("flex", 2.0, 1.0, 1e-7), BenchResult("lsh", 0.1, 1.0, 0.5, exact=False)]
    checks = dict((line.split(":")[0], ok) for ok, line in check_targets(results))
    assert checks == {"dense": True, "packed": False, "flex": True, "packed faster than dense": True,
                      "flex faster than dense": False}
    skipped = [BenchResult("dense", None, None, None, status="skipped: out of memory (needs ~9 GiB)"),
               BenchResult("packed", 0.5, 1.0, 1e-7)]
    assert [ok for ok, _ in check_targets(skipped)] == [True, True]


def test_bench_simulate_tiny_run(capsys):
    assert load("bench_simulate.py").main(["--events", "1", "--mu", "3", "--no-particles-from"]) == 0
    out = capsys.readouterr().out
    assert "events/s simulated" in out
    for label in ("particles pT>0.9", "pixel hits", "noise fraction", "volume 8 layer 2"):
        assert label in out


def test_bench_locality_tiny_run(capsys):
    assert load("bench_locality.py").main(["--events", "1", "--pileup", "3", "--repeat", "1",
                                           "--methods", "grid"]) == 0
    out = capsys.readouterr().out
    assert "reconstructible_ratio" in out and re.search(r"grid\s+\d+\.\d+ s", out)


def test_bench_metrics_tiny_run(mini_dir, capsys):
    load("bench_metrics.py").main(["--data", str(mini_dir), "--repeat", "1"])
    out = capsys.readouterr().out
    assert "5527 hits" in out and "trackstudy evaluate (fresh process)" in out


def test_bench_track_formation_synthetic_event():
    hits, labels, track, emb = load("bench_track_formation.py").synthetic_event(300, "grid")
    assert len(hits) == len(labels) == len(track) == len(emb) == 300
    # pseudo-tracks of 4-8 hits never cross a locality cluster
    assert all(np.unique(labels[track == t]).size == 1 for t in np.unique(track))
    assert emb.shape == (300, 32) and emb.dtype == np.float32


def test_calibrate_simulator_reproduces_the_shipped_tables(tmp_path, capsys):
    out = tmp_path / "calibration.npz"
    assert load("calibrate_simulator.py").main(["--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    new, shipped = np.load(out), np.load(ROOT / "trackstudy" / "data" / "simulator_calibration.npz")
    assert sorted(new.files) == sorted(shipped.files)
    for key in shipped.files:
        np.testing.assert_array_equal(new[key], shipped[key], err_msg=key)


def test_gpu_checks_script_parses_and_its_bench_options_exist():
    script = (SCRIPTS / "gpu_checks.sh").read_text()
    assert subprocess.run(["bash", "-n", str(SCRIPTS / "gpu_checks.sh")]).returncode == 0
    latency = shlex.split(re.search(r"^LATENCY=\((.*)\)$", script, re.M).group(1))
    assert latency[:2] == ["bench", "latency"]
    benchmark_parser("latency").parse_args([*latency[2:], "--preset", "paper"])
    scaling = re.search(r'"\$\{CLI\[@\]\}" bench scaling (.*?) --json', script, re.S).group(1)
    benchmark_parser("scaling").parse_args(shlex.split(scaling.replace("\\\n", " ")))
