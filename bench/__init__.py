"""The benchmark suite: ``python -m bench`` (``--help`` lists the scenarios).

Every measuring party is its own process, started by ``bench.cli`` and reporting on stdout
with one JSON object per line (``bench.common.emit``), so a subscriber, a publisher and the
bridge never share a GIL. Results are recorded in docs/benchmarks.md.
"""
