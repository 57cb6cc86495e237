"""The SDK worker's encoding cost per record shape: CPU µs per entry for stdlib records with 0-2 `extra=`
fields, with and without a bound context (the Django/Flask integrations bind a request id for every request),
and structlog events. Run from the project root (a few seconds):

    .venv/bin/python -m benchmarks.sdk_bench_shapes [--sdk DIR] [--entries N] [--rounds N]

(`--entries 200 --rounds 1`: a smoke run of a second.)

`--sdk DIR` imports `oglogstream` from DIR instead (e.g. an older revision: `mkdir /tmp/old && git archive
<commit> sdk | tar -x -C /tmp/old`, then `--sdk /tmp/old/sdk`). `--against /tmp/old/sdk` compares two
encoders in one process: both encode the same captured items, alternating (the order swapped each round),
and each shape reports the per-round ratio this/against (median and quartiles): on a shared machine whose
speed moves by tens of percent between minutes, only such paired numbers are comparable.
Each shape: 5,000 entries encoded by one `EntryEncoder` as the worker encodes them (chunks of 256 through
`encode_lines`; caches warm after the first), garbage collector off while timing, ROUNDS interleaved rounds;
best and median of the rounds. The records are captured by a real `OgLogHandler`
(`sdk_encode_bench.captured_records`), so they are what the handler builds today.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENTRIES = 5_000
ROUNDS = 7
CONTEXT = {"request_id": "3f2a9c1e4b7d4e0f"}


def shapes(entries: int) -> dict[str, tuple[str, list[Any]]]:
    """name -> (encoder method, items)."""
    from oglogstream._capture import StructEvent

    from .sdk_encode_bench import captured_records

    def records(context: Any, extras: list[str]) -> list[Any]:
        return captured_records(entries, tuple(extras), context)

    def events(timestamp: bool) -> list[Any]:
        out = []
        for i in range(entries):
            event: dict[str, Any] = {"event": "request served", "user_id": i, "path": "/api/items"}
            if timestamp:
                event.update(level="info", logger="app", timestamp=f"2026-11-29T17:00:00.{i:06d}Z")
            out.append((StructEvent(event, "info", 1764435600.5, "MainThread", None), None))
        return out

    return {
        "record, no extra": ("encode_captured", records(None, [])),
        "record, 2 extras (the burst benchmark's)": ("encode_captured", records(None, ["user_id", "path"])),
        "record + bound context, no extra": ("encode_captured", records(CONTEXT, [])),
        "record + bound context, 1 extra": ("encode_captured", records(CONTEXT, ["user_id"])),
        "record + bound context, 2 extras": ("encode_captured", records(CONTEXT, ["user_id", "path"])),
        "structlog event, 2 keys": ("encode_struct", events(False)),
        "structlog event, level/logger/ISO timestamp": ("encode_struct", events(True)),
    }


def _encode_all(encoder: Any, method: str, items: list[Any], chunk: int) -> float:
    """CPU µs per entry to encode `items` with `encoder`, garbage collector off. Records as the worker encodes
    them (`_ingest.ingest`): chunks of `chunk` through one `encode_lines` generator (an older SDK without
    it: record by record); events one `encode_struct` each."""
    encode: Callable[..., bytes] = getattr(encoder, method)
    lines = getattr(encoder, "encode_lines", None)
    gc.collect()
    gc.disable()
    try:
        start = time.thread_time()
        if method != "encode_captured":
            for event, context in items:
                encode(event, context)
        elif lines is None:
            for item in items:
                encode(item)
        else:
            for first in range(0, len(items), chunk):
                for _line in lines(items[first : first + chunk]):
                    pass
        return (time.thread_time() - start) / len(items) * 1e6
    finally:
        gc.enable()


def _against(sdk: str, scratch: str) -> Any:
    """`EntryEncoder` of the `oglogstream` package in directory `sdk`, imported beside this one (a copy in
    `scratch` renamed `oglogstream_against`: the SDK imports itself relatively)."""
    shutil.copytree(Path(sdk) / "oglogstream", Path(scratch) / "oglogstream_against")
    sys.path.insert(0, scratch)
    return importlib.import_module("oglogstream_against._entry").EntryEncoder


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sdk", help="import oglogstream from this directory")
    parser.add_argument("--against", metavar="DIR",
                        help="A/B in this process: also time the encoder of the oglogstream in DIR")
    parser.add_argument("--entries", type=int, default=ENTRIES, help="entries per shape")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    if args.entries < 1 or args.rounds < 1:
        raise SystemExit("--entries and --rounds must be at least 1")
    if args.sdk:
        sys.path.insert(0, args.sdk)
    import oglogstream
    from oglogstream._entry import EntryEncoder
    from oglogstream._ingest import INGEST_CHUNK

    print(f"oglogstream from {oglogstream.__file__}; CPU µs per entry ({args.entries:,} entries,"
          f" {args.rounds} rounds)")
    cases = shapes(args.entries)
    encoders = {"this": EntryEncoder("bench")}
    times: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="shapes-against-") as scratch:
        if args.against:
            encoders["against"] = _against(args.against, scratch)("bench")
            print(f"A/B against {args.against} (alternating, the order swapped each round)")
        for number in range(args.rounds):
            for name, (method, items) in cases.items():
                for which in encoders if number % 2 == 0 else reversed(encoders):
                    cost = _encode_all(encoders[which], method, items, INGEST_CHUNK)
                    times.setdefault((name, which), []).append(cost)
    for name in cases:
        this = times[name, "this"]
        line = f"  {name:<46} best {min(this):5.2f}  median {statistics.median(this):5.2f}"
        if args.against:
            other = times[name, "against"]
            ratios = sorted(a / b for a, b in zip(this, other, strict=True))
            line += (f"  | against: best {min(other):5.2f}  median {statistics.median(other):5.2f}"
                     f"  | this/against per round: median {statistics.median(ratios):.3f}"
                     f" ({ratios[len(ratios) // 4]:.3f}-{ratios[3 * len(ratios) // 4]:.3f})")
        print(line)


if __name__ == "__main__":
    main()
