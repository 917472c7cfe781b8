"""scripts/bench_pretraining.py answers --help as a fresh process (its work is the label-efficiency
study, tested in tests/study/test_pretraining_study.py)."""

from __future__ import annotations

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
