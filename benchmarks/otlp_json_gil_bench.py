"""How long OTLP/JSON decoding holds the GIL in one go: the previous parse (`json.loads` of the whole body,
one C call) against `otlp.decode.decode_json` (bounded pieces, otlp/jsondoc.py), same bodies, same run.

Run from the project root: `.venv/bin/python -m benchmarks.otlp_json_gil_bench [--repeats 3] [--scale 1]`
(a few minutes). `--scale F` makes both bodies F times as large (default 1: the widest valid export and
32 MiB of nesting, the receiver's limits).

Each decode runs on a worker thread, as the receiver runs it; the main thread wakes every millisecond and
records the longest gap between two wake-ups: the longest time the event loop of a server could not have
run. Baseline in the same run: the gap with no decode running. Each case runs `--repeats` times (default
REPEATS); the worst is shown. A decode may refuse a hostile body (the receiver's 413/400: ValueError,
Oversized); any other exception ends the benchmark with its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from oglogstream.stack.ingestion.otlp import decode
from oglogstream.stack.ingestion.otlp.protowire import Oversized

REPEATS = 3


WIDEST_RECORDS = 10_000
NESTED_LISTS = 32_000


def _widest(records: int) -> bytes:
    attrs = [{"key": f"key{k}", "value": {"stringValue": f"value{k}"}} for k in range(64)]
    records_json = [
        {"severityNumber": 9, "body": {"stringValue": f"m{i}"}, "attributes": attrs} for i in range(records)
    ]
    document = {"resourceLogs": [{"scopeLogs": [{"logRecords": records_json}]}]}
    return json.dumps(document, separators=(",", ":")).encode()


def _nested(lists: int) -> bytes:
    return b'{"resourceLogs":[],"x":[' + b",".join([b"[" * 500 + b"]" * 500] * lists) + b"]}"


#: What a decode raises to refuse a body (the receiver answers 400/413); anything else is a broken benchmark.
REFUSALS = (ValueError, Oversized)


def worst_gap(work: Callable[[], Any]) -> tuple[float, float]:
    """(seconds `work` took on a thread, the longest main-thread gap meanwhile); re-raises what `work`
    raised unless it is one of REFUSALS."""
    done = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except REFUSALS:  # expected for hostile bodies
            pass
        except BaseException as exc:  # handed to the main thread, raised there
            failed.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=run)
    started = last = time.perf_counter()
    thread.start()
    gap = 0.0
    while not done.wait(0.001):
        now = time.perf_counter()
        gap, last = max(gap, now - last), now
    thread.join()
    if failed:
        raise failed[0]
    return time.perf_counter() - started, gap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=REPEATS, help=f"runs per case (default {REPEATS})")
    parser.add_argument("--scale", type=float, default=1.0, help="size of the bodies, 0 < F <= 1 (default 1)")
    args = parser.parse_args()
    repeats, records, lists = args.repeats, int(WIDEST_RECORDS * args.scale), int(NESTED_LISTS * args.scale)
    if repeats < 1 or not 0 < args.scale <= 1 or not records or not lists:
        parser.error("--repeats must be >= 1 and --scale in (0, 1], large enough for one record")
    idle = max(worst_gap(lambda: threading.Event().wait(2.0))[1] for _ in range(repeats))
    print(f"idle baseline: longest gap {idle * 1000:.1f} ms\n")
    print("| body | decoder | time | longest GIL hold (main-thread gap) |")
    print("|---|---|---|---|")
    widest = "widest valid export: " if records == WIDEST_RECORDS else ""
    for name, body in ((f"{widest}{records:,} records x 64 attributes", _widest(records)),
                       (f"{lists:,} nested empty lists, 500 deep", _nested(lists))):
        for decoder, work in (("json.loads (the previous parse step)", lambda b=body: json.loads(b)),
                              ("decode_json (pieces)", lambda b=body: decode.decode_json(b))):
            runs = [worst_gap(work) for _ in range(repeats)]
            took, gap = max(r[0] for r in runs), max(r[1] for r in runs)
            print(f"| {name} ({len(body) / 2**20:.1f} MiB) | {decoder} | {took * 1000:.0f} ms | "
                  f"{gap * 1000:.0f} ms |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
