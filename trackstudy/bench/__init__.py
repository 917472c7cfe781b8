"""Benchmarks behind ``trackstudy bench <name>``.

Each module of this package defines ``register_cli(subparsers)`` for one benchmark
sub-command; :data:`trackstudy.cli.bench.BENCHMARKS` lists them (name and help text), and a
module is imported only when its sub-command runs, so building the CLI never imports torch.
A new benchmark is a module here plus one line in that list.
"""
