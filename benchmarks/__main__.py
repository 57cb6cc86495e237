"""Run every benchmark in turn: `python -m benchmarks` (results go to stdout; copy them into docs/benchmarks.md)."""

from __future__ import annotations

import runpy
import sys

SUITES = (
    "benchmarks.sdk_bench",
    "benchmarks.integrations_bench",
    "benchmarks.stack_ingest_bench",
    "benchmarks.stack_query_bench",
    "benchmarks.live_latency_bench",
)

if __name__ == "__main__":
    chosen = sys.argv[1:] or SUITES
    for name in chosen:
        print(f"\n===== {name} =====", flush=True)
        runpy.run_module(name if name.startswith("benchmarks.") else f"benchmarks.{name}", run_name="__main__")
