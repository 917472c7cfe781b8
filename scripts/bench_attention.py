"""``trackstudy bench attention`` at several hit counts, checked against the attention-backend targets.

For each --hits value, runs the attention benchmark (every backend on the same random q, k, v
with a realistic cluster structure; :mod:`trackstudy.bench.attention`), prints its table, then
checks the targets of the attention backends:

* every exact backend (dense, flex, packed, explicit) within --tolerance (1e-4) of the float64 reference;
* packed and flex faster than dense (where dense fits in memory);
* dense reported as skipped (out of memory) rather than crashing where it cannot fit.

Every other option is one of ``trackstudy bench attention`` (see ``trackstudy bench attention -h``;
--event is not for this script), with --repeats 3 unless given. Exit status 1 when a check fails.
Run it pinned to one core on CPU for the timings (the machine is shared):

    taskset -c 0 .venv/bin/python scripts/bench_attention.py --hits 8192 55000
    .venv/bin/python scripts/bench_attention.py --hits 8192 --device cuda
"""

from __future__ import annotations

import argparse
import sys

from trackstudy.bench.attention import BenchResult, format_results, run_attention_benchmark
from trackstudy.cli.bench import attention_setup, benchmark_parser
from trackstudy.device import describe_device
from trackstudy.errors import TrackstudyError


def check_targets(results: list[BenchResult], tolerance: float = 1e-4) -> list[tuple[bool, str]]:
    """(passed, line) for each target check of one hit count."""
    checks = []
    by = {r.backend: r for r in results}
    for r in results:
        if r.exact and r.max_abs_diff is not None:
            checks.append((r.max_abs_diff <= tolerance,
                           f"{r.backend}: max |diff| {r.max_abs_diff:.2e} <= {tolerance:g}"))
    dense = by.get("dense")
    if dense is not None and dense.seconds is not None:
        for name in ("packed", "flex"):
            r = by.get(name)
            if r is not None and r.seconds is not None:
                checks.append((r.seconds < dense.seconds,
                               f"{name} faster than dense: {dense.seconds / r.seconds:.1f}x"))
    elif dense is not None:
        checks.append((dense.status.startswith("skipped"), f"dense not attempted: {dense.status}"))
    return checks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].strip("`"),
        epilog="Every other option is passed on to 'trackstudy bench attention' (see its -h).")
    parser.add_argument("--hits", type=int, nargs="+", default=[8192, 55000], help="sequence lengths to run")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest allowed |difference| of an exact backend from the reference (default 1e-4)")
    args, rest = parser.parse_known_args(argv)
    bench_options = benchmark_parser("attention", prog=f"{parser.prog} (trackstudy bench attention options)")
    failures = 0
    try:
        for n in args.hits:
            options = bench_options.parse_args(["--hits", str(n), "--repeats", "3", *rest])
            inputs, dev, kwargs = attention_setup(options)
            print(f"\n== {n} hits, mean cluster size {options.cluster_size:g}, {describe_device(dev)}")
            results = run_attention_benchmark(None, inputs=inputs, **kwargs)
            print(format_results(results))
            for ok, line in check_targets(results, args.tolerance):
                failures += not ok
                print(f"  [{'ok' if ok else 'FAIL'}] {line}")
    except TrackstudyError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
