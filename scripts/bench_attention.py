"""Benchmark of the attention backends and the targets of issue 5 / issue 7.

For each --hits value, runs ``trackstudy bench attention`` (every backend on the same random
q, k, v with a realistic cluster structure) and prints the table, then checks:

* every exact backend (dense, flex, packed, explicit) within 1e-4 of the float64 reference;
* packed and flex faster than dense (where dense fits in memory);
* dense reported as skipped (out of memory) rather than crashing where it cannot fit.

Run it pinned to one core on CPU for the timings (the machine is shared):

    taskset -c 0 .venv/bin/python scripts/bench_attention.py --hits 8192 55000
    .venv/bin/python scripts/bench_attention.py --hits 8192 --device cuda
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hits", type=int, nargs="+", default=[8192, 55000], help="sequence lengths to run")
    parser.add_argument("--cluster-size", type=float, default=64.0, help="mean cluster size")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)

    import torch

    from trackstudy.bench.attention import format_results, run_attention_benchmark
    from trackstudy.device import describe_device, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    failures = 0
    for n in args.hits:
        print(f"\n== {n} hits, mean cluster size {args.cluster_size:g}, {describe_device(dev)}")
        results = run_attention_benchmark(n, args.cluster_size, repeats=args.repeats, device=str(dev))
        print(format_results(results))
        by = {r.backend: r for r in results}
        for r in results:
            if r.exact and r.max_abs_diff is not None:
                ok = r.max_abs_diff <= 1e-4
                failures += not ok
                print(f"  [{'ok' if ok else 'FAIL'}] {r.backend}: max |diff| {r.max_abs_diff:.2e} <= 1e-4")
        dense = by.get("dense")
        if dense is not None and dense.seconds is not None:
            for name in ("packed", "flex"):
                r = by.get(name)
                if r is not None and r.seconds is not None:
                    ok = r.seconds < dense.seconds
                    failures += not ok
                    print(f"  [{'ok' if ok else 'FAIL'}] {name} faster than dense: {dense.seconds / r.seconds:.1f}x")
        elif dense is not None:
            print(f"  [ok] dense not attempted: {dense.status}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
