"""Benchmarks behind ``trackstudy bench <name>``.

Each module of this package that defines ``register_cli(subparsers)`` adds one benchmark
sub-command (``subparsers.add_parser(name, ...)`` with ``set_defaults(func=...)``);
:mod:`trackstudy.cli.bench` discovers them, so ``latency`` and ``scaling`` are added by
adding ``latency.py`` and ``scaling.py`` here.
"""
