"""Benchmarks that measure and print numbers: attention backends (:mod:`.attention`), the
inference pipeline stage by stage (:mod:`.latency`), and the encoder against the number of hits
(:mod:`.scaling`).

The modules only measure: functions with explicit arguments that return results and tables.
Their command line (``trackstudy bench NAME``) is in :mod:`trackstudy.cli.bench`.
"""
