"""What `logger.exception` costs the caller with `OgLogHandler` (default settings), against a baseline SDK.

Since the traceback is formatted on the caller's thread at the capture (docs/sdk.md "What is captured
when"), the call pays `traceback.format_exception`, which the worker paid before. This measures it: each
round runs one child process per SDK, alternating (the tree's SDK, then the baseline's: a git revision
exported with `git archive`), both against the same local counting server. A child logs CALLS
`logger.exception(...)` calls, each in the `except` block of a ValueError raised DEPTH frames down, and
reports the median and mean µs of the call alone (perf_counter_ns around it), after WARMUP calls.

    .venv/bin/python -m benchmarks.sdk_exception_bench --baseline-rev 436341b~1 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.sdk_bench import ROOT, counting_server

CALLS = 2000
WARMUP = 200
#: Frames below the `except` block's: a shallow failure and a deep one (a framework's stack).
DEPTHS = (2, 20)
ROUNDS = 3
CHILD_TIMEOUT = 120.0


def _fail(depth: int, i: int) -> None:
    if depth:
        _fail(depth - 1, i)
    raise ValueError(f"request {i} failed")


def child(url: str, depth: int) -> dict[str, float]:
    """In a child process: (median, mean) µs per `logger.exception` call and the delivered share."""
    from oglogstream import OgLogHandler

    handler = OgLogHandler(url, "exc-bench")
    log = logging.getLogger("exc-bench")
    log.propagate = False
    log.addHandler(handler)
    times: list[int] = []
    clock = time.perf_counter_ns
    for i in range(WARMUP + CALLS):
        try:
            _fail(depth, i)
        except ValueError:
            began = clock()
            log.exception("request %d failed", i)
            times.append(clock() - began)
    ok = handler.flush(30)
    stats = handler.stats()
    handler.close(5)
    measured = times[WARMUP:]
    return {
        "median_us": statistics.median(measured) / 1000,
        "mean_us": statistics.fmean(measured) / 1000,
        "flushed": float(ok),
        "sent": float(stats.sent),
    }


def _run_child(url: str, depth: int, sdk_path: str | None) -> dict[str, float]:
    env = dict(os.environ)
    if sdk_path:
        env["PYTHONPATH"] = sdk_path
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.sdk_exception_bench", "--child", url, "--depth", str(depth)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT, check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline-rev", required=False, help="git revision whose sdk/ is the baseline")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.depth)))
        return
    sdks: list[tuple[str, str | None]] = [("tree", None)]
    with tempfile.TemporaryDirectory() as tmp:
        if args.baseline_rev:
            archive = subprocess.run(
                ["git", "archive", args.baseline_rev, "sdk"], cwd=ROOT, capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            sdks.append((f"baseline {args.baseline_rev}", os.path.join(tmp, "sdk")))
        results: dict[tuple[str, int], list[dict[str, float]]] = {}
        with counting_server() as server:
            for _ in range(args.rounds):
                for depth in DEPTHS:
                    for name, path in sdks:
                        results.setdefault((name, depth), []).append(_run_child(server["http"], depth, path))
    print(f"logger.exception per call, OgLogHandler defaults, {CALLS} calls a round, {args.rounds} rounds "
          f"(median of the rounds' medians / means), load {os.getloadavg()[0]:.2f}")
    for (name, depth), rows in results.items():
        median = statistics.median(row["median_us"] for row in rows)
        mean = statistics.median(row["mean_us"] for row in rows)
        delivered = all(row["flushed"] and row["sent"] == WARMUP + CALLS for row in rows)
        print(f"  {name:<28} {depth + 2:>2} frames: median {median:7.1f} µs  mean {mean:7.1f} µs  "
              f"all delivered: {delivered}")


if __name__ == "__main__":
    main()
