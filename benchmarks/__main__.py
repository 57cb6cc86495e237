"""Run every benchmark in turn, each at its default sizes: `python -m benchmarks [name ...]` (`make bench`).

Results go to stdout; docs/benchmarks.md records them with the command of each suite. A suite that fails is
reported and the others still run; the exit status is 1 if any failed. Options of one suite are given by
running it alone (`python -m benchmarks.sdk_bench --rounds 1`).
"""

from __future__ import annotations

import runpy
import shutil
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


#: Suites that need a system tool the README's set-up does not install: left out of the default run (with
#: a line saying so) when it is missing; named explicitly, they run and fail with their own message.
NEEDS = {"benchmarks.sdk_caller_instructions": "valgrind"}


def main(names: list[str]) -> int:
    """Run `names` (default: SUITES) one after the other; 0 if all exited cleanly, else 1 (2: an option was
    given, which this runner does not take)."""
    options = [name for name in names if name.startswith("-")]
    if options:
        print(f"python -m benchmarks takes suite names only, not {' '.join(options)}: to pass options, run"
              " the suite alone (python -m benchmarks.sdk_bench --rounds 1)", file=sys.stderr)
        return 2
    failed = []
    chosen = names
    if not names:
        chosen = []
        for suite in SUITES:
            tool = NEEDS.get(suite)
            if tool is not None and shutil.which(tool) is None:
                print(f"\n===== {suite} ===== skipped: {tool} is not installed", flush=True)
            else:
                chosen.append(suite)
    for name in chosen:
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
