"""Timing harness and per-task runners behind ``tools/benchmark.py`` (see docs/benchmarks.md)."""

from resdet.benchmark.run import format_report, run_benchmark
from resdet.benchmark.settings import BenchSettings
from resdet.benchmark.timing import Measurement, Runner, compare, run_alternating

__all__ = ["BenchSettings", "Measurement", "Runner", "compare", "format_report",
           "run_alternating", "run_benchmark"]
