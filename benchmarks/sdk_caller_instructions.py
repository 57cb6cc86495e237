"""The SDK benchmark's burst, counted in CPU instructions instead of seconds (valgrind's callgrind).

Run from the project root (about 1.5-3 minutes; needs `valgrind`, e.g. `apt-get install valgrind`):
    .venv/bin/python -m benchmarks.sdk_caller_instructions [--records 2000]

Why: on a shared machine one case's seconds move by +-30 % between runs of the same code (docs/benchmarks.md),
more than most changes to the handler's hot path. Instructions executed do not depend on the machine's load,
so they show what a change costs the application's thread, before the timed benchmark shows whether it
matters. They are not time (cache misses, the GIL hand-overs and the work off the GIL are not in them): the
targets stay those of `benchmarks.sdk_bench`.

Each case of `benchmarks.sdk_bench` (NullHandler, StreamHandler to /dev/null, OgLogHandler with its
defaults against the counting server) runs the benchmark's record (`logger.info("request served %d", i,
extra={"user_id": i, "path": "/api/items"})`) twice under callgrind, `records` and 2 x `records` calls after
a warm-up, and waits until every record was delivered (OgLogHandler: `flush()`). The difference between the
two runs, per record, removes start-up and warm-up:
* caller: instructions of the application's thread per call (valgrind's thread 1; the garbage collector's
  work on it included);
* all threads: the whole process per record (OgLogHandler: the caller, the worker's encoding and the sending
  thread's httpx and gzip).

Caveats. Under callgrind the burst runs ~1,000 records/s (every instruction is simulated), under the
worker's DEFER_RATE: the worker does not wait for the burst's end as in the timed benchmark but encodes
alongside it, so the captured records die sooner and the caller's garbage collection (~0.45 µs a call in the
timed burst) is mostly not in its count. The caller's count repeats within ~2 % between runs; the
all-threads count moves by ~3 % (where batches are cut and how often the worker polls depend on the
threads' interleaving), which is more than most encoder changes: measure those with
`benchmarks.sdk_bench_shapes --against`.
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import shutil
import subprocess
import sys
import tempfile

from benchmarks.peers.handlers import CASES
from benchmarks.sdk_bench import counting_server

RECORDS = 2_000
WARMUP = 200
BASELINES = ("NullHandler", "StreamHandler(/dev/null)")
MEASURED = (*BASELINES, "OgLogHandler")
CHILD_TIMEOUT = 600.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_case(name: str, url: str, records: int) -> None:
    """Child (under valgrind): warm up, log `records` burst records, wait for delivery, exit at once."""
    handler, _close = CASES[name](url, 0)
    logger = logging.getLogger(f"bench.{name}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    info = logger.info
    for i in range(WARMUP):
        info("request served %d", i, extra={"user_id": i, "path": "/api/items"})
    handler.flush()
    for i in range(records):
        info("request served %d", i, extra={"user_id": i, "path": "/api/items"})
    handler.flush()
    stats = getattr(handler, "stats", None)
    if stats is not None and stats().queued:
        sys.exit(f"{name}: {stats().queued} records not delivered")
    os._exit(0)  # nothing after the burst is counted: no close, no interpreter teardown


def instructions(name: str, url: str, records: int) -> tuple[int, int]:
    """(thread 1's instructions, all threads') of one child run under callgrind."""
    with tempfile.TemporaryDirectory() as out:
        command = [
            "valgrind", "--tool=callgrind", "--separate-threads=yes",
            f"--callgrind-out-file={out}/callgrind.out", sys.executable, "-m",
            "benchmarks.sdk_caller_instructions", "--case", name, "--http", url, "--records", str(records),
        ]
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        if done.returncode != 0:
            raise RuntimeError(f"{name}: exit {done.returncode}: {done.stderr[-2000:]}")
        # One file per thread, `callgrind.out-NN` (the bare name stays empty).
        per_thread = {path: _total(path) for path in glob.glob(f"{out}/callgrind.out-*")}
        main = [count for path, count in per_thread.items() if path.endswith("-01")]
        if len(main) != 1:
            raise RuntimeError(f"{name}: no thread-1 profile among {sorted(per_thread)}")
        return main[0], sum(per_thread.values())


def _total(path: str) -> int:
    with open(path) as profile:
        for line in profile:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--http", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(args.case, args.http, args.records)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)")
    n = args.records
    per_call: dict[str, tuple[float, float]] = {}
    with counting_server() as server:
        for name in MEASURED:
            one, one_all = instructions(name, server["http"], n)
            two, two_all = instructions(name, server["http"], 2 * n)
            per_call[name] = ((two - one) / n, (two_all - one_all) / n)
            print(f"  {name}: caller {per_call[name][0]:,.0f}, all threads {per_call[name][1]:,.0f}"
                  " instructions per record", flush=True)
    null, stream = per_call["NullHandler"][0], per_call["StreamHandler(/dev/null)"][1]
    print(f"\nInstructions per record ({n:,} and {2 * n:,} records, difference; PYTHONHASHSEED=0)")
    print("| handler | caller | x Null | all threads | x Stream |")
    print("|---|---:|---:|---:|---:|")
    for name, (caller, everything) in per_call.items():
        print(f"| {name} | {caller:,.0f} | {caller / null:.2f} | {everything:,.0f}"
              f" | {everything / stream:.2f} |")


if __name__ == "__main__":
    main()
