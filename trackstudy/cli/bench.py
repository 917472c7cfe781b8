"""``trackstudy bench``: benchmarks, one sub-command per module of :mod:`trackstudy.bench`.

Building the parser of every ``trackstudy`` command must stay cheap (no torch import), so the
benchmarks are listed here by name and help text only; the module ``trackstudy.bench.NAME`` is
imported when its sub-command runs, and its own ``register_cli(subparsers)`` then parses the
benchmark's options (``trackstudy bench NAME -h`` shows them). A new benchmark module adds a
line to :data:`BENCHMARKS`.
"""

from __future__ import annotations

import argparse
import importlib

#: name -> help line of each benchmark module trackstudy.bench.<name> (which defines register_cli).
BENCHMARKS = {
    "attention": "time every attention backend on the same clustered random inputs",
    "latency": "time every stage of the inference pipeline (clustering, masks, encoder, track formation)",
    "scaling": "encoder forward time and memory of every attention backend versus the number of hits",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmarks (attention backends, inference latency, scaling)",
        description="Benchmarks that print measured numbers. Run 'trackstudy bench BENCHMARK -h' for options.")
    sub = parser.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    sub.required = True
    for name, help_text in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_text, add_help=False, prefix_chars="\0")
        p.add_argument("bench_args", nargs=argparse.REMAINDER)
        p.set_defaults(func=_run, bench_prog=f"{parser.prog} {name}")


def _run(args: argparse.Namespace):
    """Import the benchmark module, parse its options with its own parser, run it."""
    from trackstudy.cli import OneLineParser, absolute_paths

    module = importlib.import_module(f"trackstudy.bench.{args.bench_command}")
    outer = OneLineParser(prog=args.bench_prog.rsplit(" ", 1)[0], add_help=False)
    module.register_cli(outer.add_subparsers(dest="bench_command"))
    inner = outer.parse_args([args.bench_command, *args.bench_args])
    return inner.func(absolute_paths(inner))
