"""Run every benchmark in turn, each at its default sizes: `python -m benchmarks [name ...]` (`make bench`).

Results go to stdout; docs/benchmarks.md records them with the command of each suite. A suite that fails is
reported and the others still run; the exit status is 1 if any failed. Options of one suite are given by
running it alone (`python -m benchmarks.sdk_bench --rounds 1`).
"""

from __future__ import annotations

import runpy
import sys
import traceback

#: Every benchmark module, cheapest first (tests/benchmarks/test_benchmarks_smoke.py checks that none is
#: missing and runs each at a small size).
SUITES = (
    "benchmarks.sdk_bench",
    "benchmarks.sdk_bench_shapes",
    "benchmarks.sdk_encode_bench",
    "benchmarks.sdk_burst_bench",
    "benchmarks.sdk_exception_bench",
    "benchmarks.sdk_caller_instructions",
    "benchmarks.sdk_async_bench",
    "benchmarks.sdk_outage_bench",
    "benchmarks.integrations_bench",
    "benchmarks.otlp_json_gil_bench",
    "benchmarks.ingest_decode_bench",
    "benchmarks.stack_door_bench",
    "benchmarks.stack_ingest_bench",
    "benchmarks.process_drain_bench",
    "benchmarks.stack_query_bench",
    "benchmarks.attr_query_bench",
    "benchmarks.live_latency_bench",
    "benchmarks.live_idle_bench",
    "benchmarks.deadletter_page_bench",
)


def main(names: list[str]) -> int:
    """Run `names` (default: SUITES) one after the other; 0 if all exited cleanly, else 1."""
    failed = []
    for name in names or SUITES:
        module = name if name.startswith("benchmarks.") else f"benchmarks.{name}"
        print(f"\n===== {module} =====", flush=True)
        # Each suite parses its own command line: it must see none of ours (the suite names).
        sys.argv = [module]
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            if exc.code not in (None, 0):
                failed.append(module)
                print(f"{module} exited with {exc.code!r}", file=sys.stderr, flush=True)
        except Exception:  # one broken suite must not cost the others' numbers
            failed.append(module)
            traceback.print_exc()
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
