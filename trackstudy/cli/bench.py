"""``trackstudy bench``: benchmarks, one sub-command per module of :mod:`trackstudy.bench`
that defines ``register_cli(subparsers)`` (``attention`` today; ``latency`` and ``scaling``
are added the same way)."""

from __future__ import annotations

import importlib
import pkgutil

import trackstudy.bench


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmarks (attention backends, ...)",
        description="Benchmarks that print measured numbers. Run 'trackstudy bench BENCHMARK -h' for options.")
    sub = parser.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    sub.required = True
    for info in sorted(pkgutil.iter_modules(trackstudy.bench.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"trackstudy.bench.{info.name}")
        register_cli = getattr(module, "register_cli", None)
        if register_cli is not None:
            register_cli(sub)
