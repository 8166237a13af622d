"""The benchmarks' child processes are ``harness.children``'s; a scenario that cannot be
measured, whether a child or the scenario found out, fails with one error type."""

from harness.children import ROOT, Child, ChildError

__all__ = ["ROOT", "BenchError", "Child"]

BenchError = ChildError
