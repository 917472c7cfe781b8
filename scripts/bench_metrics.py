"""Benchmark: metrics on a full-size event (prints seconds; no asserts).

    python scripts/bench_metrics.py [--data DIR] [--repeat 5]

Without --data, one full-detector mu = 200 event is simulated into a temporary folder
(trackstudy.data.simulate). Times (a) evaluate_event on tables in memory, (b) trackml_score
alone, (c) the ``trackstudy evaluate`` command in-process (reading the CSVs included) and
(d) the command as a fresh process (Python start-up and imports included). The submission is
the truth with 10 % of the hits shuffled (trackml-library shuffle_hits), so it has a realistic
number of tracks.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

from trackstudy.baselines import run_baseline
from trackstudy.cli import main as cli_main
from trackstudy.data.io import find_events, read_event
from trackstudy.metrics import evaluate_event, trackml_score, write_submission


def timed(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset folder (default: simulate one mu=200 event)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else Path(tmp) / "mu200"
        if args.data is None:
            from trackstudy.data.simulate import SimulationConfig, simulate_dataset

            t = time.perf_counter()
            simulate_dataset(data, 1, SimulationConfig(pileup=200), seed=42, progress=False)
            print(f"simulated one full-detector mu=200 event in {time.perf_counter() - t:.1f} s")
        eid, prefix = find_events(data)[0]
        ev = read_event(prefix, eid)
        sub = run_baseline("shuffle", ev, {"rate": 0.1}, seed=0)
        print(f"event {eid}: {len(ev.hits)} hits, {len(ev.particles)} particles, "
              f"{sub.track_id.nunique()} submitted tracks")
        best, med = timed(lambda: evaluate_event(sub, ev.truth, ev.particles, hits=ev.hits), args.repeat)
        print(f"evaluate_event (in memory):          min {best:.3f} s  median {med:.3f} s")
        best, med = timed(lambda: trackml_score(sub, ev.truth), args.repeat)
        print(f"trackml_score (in memory):           min {best:.3f} s  median {med:.3f} s")
        path = Path(tmp) / "submission.csv"
        write_submission(sub.assign(event_id=eid), path, force=True)
        cmd = ["evaluate", "--data", str(data), "--submission", str(path), "--json"]

        def run_cli():
            with redirect_stdout(StringIO()):
                assert cli_main(cmd) == 0

        best, med = timed(run_cli, args.repeat)
        print(f"trackstudy evaluate (in-process):    min {best:.3f} s  median {med:.3f} s")
        best, med = timed(lambda: subprocess.run([sys.executable, "-m", "trackstudy", *cmd], check=True,
                                                 capture_output=True), max(1, args.repeat // 2))
        print(f"trackstudy evaluate (fresh process): min {best:.3f} s  median {med:.3f} s")


if __name__ == "__main__":
    main()
