"""How long OTLP/JSON decoding holds the GIL in one go: the previous parse (`json.loads` of the whole body,
one C call) against `otlp.decode.decode_json` (bounded pieces, otlp/jsondoc.py), same bodies, same run.

Run from the project root: `.venv/bin/python -m benchmarks.otlp_json_gil_bench` (about a minute).

Each decode runs on a worker thread, as the receiver runs it; the main thread wakes every millisecond and
records the longest gap between two wake-ups: the longest time the event loop of a server could not have
run. Baseline in the same run: the gap with no decode running. Each case runs REPEATS times; the worst is
shown.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from oglogstream.stack.ingestion.otlp import decode

REPEATS = 3


def _widest() -> bytes:
    attrs = [{"key": f"key{k}", "value": {"stringValue": f"value{k}"}} for k in range(64)]
    records = [
        {"severityNumber": 9, "body": {"stringValue": f"m{i}"}, "attributes": attrs} for i in range(10_000)
    ]
    document = {"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}
    return json.dumps(document, separators=(",", ":")).encode()


def _nested() -> bytes:
    return b'{"resourceLogs":[],"x":[' + b",".join([b"[" * 500 + b"]" * 500] * 32_000) + b"]}"


def worst_gap(work: Callable[[], Any]) -> tuple[float, float]:
    """(seconds `work` took on a thread, the longest main-thread gap meanwhile)."""
    done = threading.Event()

    def run() -> None:
        try:
            work()
        except Exception:  # refusals (413) are expected for hostile bodies
            pass
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
    return time.perf_counter() - started, gap


def main() -> None:
    idle = max(worst_gap(lambda: threading.Event().wait(2.0))[1] for _ in range(REPEATS))
    print(f"idle baseline: longest gap {idle * 1000:.1f} ms\n")
    print("| body | decoder | time | longest GIL hold (main-thread gap) |")
    print("|---|---|---|---|")
    for name, body in (("widest valid export: 10,000 records x 64 attributes", _widest()),
                       ("32 MiB of nested empty lists, 500 deep", _nested())):
        for decoder, work in (("json.loads (the previous parse step)", lambda b=body: json.loads(b)),
                              ("decode_json (pieces)", lambda b=body: decode.decode_json(b))):
            runs = [worst_gap(work) for _ in range(REPEATS)]
            took, gap = max(r[0] for r in runs), max(r[1] for r in runs)
            print(f"| {name} ({len(body) / 2**20:.1f} MiB) | {decoder} | {took * 1000:.0f} ms | "
                  f"{gap * 1000:.0f} ms |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
