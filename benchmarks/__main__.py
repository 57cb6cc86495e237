"""Run every benchmark in turn: `python -m benchmarks [name ...]`.

Results go to stdout; docs/benchmarks.md records them with the command of each suite.
"""

from __future__ import annotations

import runpy
import sys

SUITES = (
    "benchmarks.sdk_bench",
    "benchmarks.sdk_encode_bench",
    "benchmarks.sdk_async_bench",
    "benchmarks.sdk_outage_bench",
    "benchmarks.integrations_bench",
    "benchmarks.stack_ingest_bench",
    "benchmarks.stack_query_bench",
    "benchmarks.live_latency_bench",
    "benchmarks.deadletter_page_bench",
)


def main(names: list[str]) -> None:
    for name in names or SUITES:
        module = name if name.startswith("benchmarks.") else f"benchmarks.{name}"
        print(f"\n===== {module} =====", flush=True)
        runpy.run_module(module, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
