"""Ingestion's per-entry CPU for a valid `POST /logs` body: the code as shipped against the code before the
msgspec fast path.

Run from the project root: `.venv/bin/python -m benchmarks.ingest_decode_bench [--before REV] [--rounds N]`
(a minute).

A/B in one process: `batch_decode.decode` (what the ingestion role runs for a body, default settings and the
accepted time window of a default stack) on 1,000-entry NDJSON bodies, with this tree's `reference_stack` and
with REV's (default: the commit before the fast path, all pydantic; `--before 009935e`: the fast path before
its rows became `fast_rows.Row` structs), extracted by `git archive` and imported under another package
name. The two alternate `--rounds` times (default ROUNDS), so both see the same machine load;
`time.process_time`, so waiting for a CPU does not count. For scale: `json.loads` of the same lines (objects,
no validation) and gunzip. Both versions' payloads are checked equal first. Shapes: the SDK's lines of
`stack_ingest_bench` (9 fields, a string and an int attribute) and a full entry (every field, 8 string
attributes). Last, the widest valid body (MAX_BATCH_ENTRIES entries of MAX_ATTRIBUTES attributes) decoded
once per version in a fresh process each: CPU and peak RSS growth.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import importlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from oglogstream.stack.ingestion import batch_decode, fast_rows, row_codec, schema
from oglogstream.wire import MAX_ATTRIBUTES, MAX_BATCH_ENTRIES

from benchmarks.stack_ingest_bench import BATCH_ENTRIES, _entries

BODIES = 10
ROUNDS = 9
RECEIVED = "2026-11-27T10:00:00.000000Z"
#: The last commit before the msgspec fast path (ingestion validated by pydantic alone).
BEFORE = "ad8fd24f78f54eadc118fc44c8105d9ed16957a6"


def _before_batch_decode(rev: str, into: Path) -> ModuleType:
    """REV's `reference_stack` as the package `oglog_stack_<rev>` under `into`; its batch_decode module."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "reference_stack"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = f"oglog_stack_{rev[:12]}"
    (into / "reference_stack").rename(into / package)
    sys.path.insert(0, str(into))
    return importlib.import_module(f"{package}.ingestion.batch_decode")


def _full_entries(n: int, prefix: str) -> list[bytes]:
    stamp = schema.current_window().newest[:10] + "T10:00:00.000000Z"
    return [
        json.dumps(
            {
                "id": f"{prefix}-{i:x}",
                "timestamp": stamp,
                "level": "error",
                "message": f"payment {i} failed: card declined by issuer (code 51)",
                "service": "billing",
                "logger": "billing.payments",
                "host": "billing-7f9c-2",
                "pid": 31337,
                "thread": "worker-3",
                "trace_id": f"{i:032x}",
                "span_id": f"{i:016x}",
                "exception": "Traceback (most recent call last):\n  ...\nCardDeclined: 51",
                "attributes": {f"attr{k}": f"value {k} of {i}" for k in range(8)},
            },
            separators=(",", ":"),
        ).encode()
        for i in range(n)
    ]


def _per_entry_us(work: Callable[[bytes], Any], bodies: list[bytes]) -> float:
    start = time.process_time()
    for body in bodies:
        work(body)
    return (time.process_time() - start) / (len(bodies) * BATCH_ENTRIES) * 1e6


def _decoder(module: ModuleType) -> Callable[[bytes], list[Any]]:
    def decode(body: bytes) -> list[Any]:
        window = module.schema.current_window()
        decoded = module.decode(body, ndjson=True, batch_id="b", received_at=RECEIVED, window=window)
        assert not decoded.rejected and len(decoded.rows) == BATCH_ENTRIES
        rows: list[Any] = decoded.rows  # dicts, or Row structs (written as the same bytes by dump_rows)
        return rows

    return decode


def _json_loads(body: bytes) -> list[Any]:
    return [json.loads(line) for line in body.split(b"\n")]


def _dump_rows(module: ModuleType) -> Callable[[list[Any]], bytes]:
    """The `dump_rows` of the version `module` (a batch_decode) belongs to: `row_codec`'s, or `schema`'s in
    the revisions before row_codec.py split from schema.py (7bb10ca; the default BEFORE is one)."""
    codec = getattr(module, "row_codec", None) or module.schema
    dump: Callable[[list[Any]], bytes] = codec.dump_rows
    return dump


def _legs(before: ModuleType) -> dict[str, Callable[[bytes], Any]]:
    """What a body costs ingestion's code, per version: decode, and decode + serialise (the JetStream
    payload, `dump_rows`); and the reference."""
    old, shipped = _decoder(before), _decoder(batch_decode)
    dump_before = _dump_rows(before)
    return {
        "before: decode": old,
        "as shipped: decode": shipped,
        "before: decode + dump_rows": lambda body: dump_before(old(body)),
        "as shipped: decode + dump_rows": lambda body: row_codec.dump_rows(shipped(body)),
        "json.loads of the lines (reference)": _json_loads,
    }


def measure(
    name: str, make: Callable[[int, str], list[bytes]], before: ModuleType, rounds: int = ROUNDS
) -> None:
    bodies = [b"\n".join(make(BATCH_ENTRIES, f"b{b}")) for b in range(BODIES)]
    work = _legs(before)
    assert fast_rows.decide(b"[" + bodies[0].replace(b"\n", b",") + b"]") is not None, "fast path declined"
    assert work["as shipped: decode + dump_rows"](bodies[0]) == work["before: decode + dump_rows"](bodies[0])
    times: dict[str, list[float]] = {label: [] for label in work}
    for _ in range(rounds):
        spent = dict.fromkeys(work, 0.0)
        for body in bodies:  # the versions alternate body by body: the load changes by the second
            for label, function in work.items():
                start = time.process_time()
                function(body)
                spent[label] += time.process_time() - start
        for label, seconds in spent.items():
            times[label].append(seconds / (len(bodies) * BATCH_ENTRIES) * 1e6)
    gunzip = _per_entry_us(gzip.decompress, [gzip.compress(body) for body in bodies])
    print(f"{name}: {len(bodies[0]) / BATCH_ENTRIES:.0f} bytes/entry, {BODIES} bodies x {rounds} rounds")
    for label, values in times.items():
        print(f"  {label}: median {statistics.median(values):.2f} us/entry (min {min(values):.2f})")
    for what in ("decode", "decode + dump_rows"):
        ratios = [
            new / old for new, old in zip(times[f"as shipped: {what}"], times[f"before: {what}"], strict=True)
        ]
        print(
            f"  as shipped / before, {what}, per round: median {statistics.median(ratios):.2f} "
            f"(range {min(ratios):.2f}-{max(ratios):.2f})"
        )
    print(f"  gunzip (both): {gunzip:.2f} us/entry", flush=True)


def _widest_body(distinct: bool) -> bytes:
    """MAX_BATCH_ENTRIES NDJSON entries of MAX_ATTRIBUTES string attributes: the most values a valid body
    holds; the values `distinct` per entry, or the same in every entry (which pydantic-core's string cache
    stores once)."""
    return b"\n".join(
        json.dumps(
            {
                "level": "info",
                "message": f"m{i}",
                "service": "s",
                "attributes": {
                    f"key{k}": f"v{i}-{k}" if distinct else f"value{k}" for k in range(MAX_ATTRIBUTES)
                },
            },
            separators=(",", ":"),
        ).encode()
        for i in range(MAX_BATCH_ENTRIES)
    )


def _widest_child(package: str, distinct: bool) -> None:
    """In a fresh process: CPU and peak RSS growth of decoding the widest body with `package`'s code."""
    module = importlib.import_module(f"{package}.ingestion.batch_decode")
    body = _widest_body(distinct)
    gc.collect()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.process_time()
    decoded = module.decode(body, ndjson=True, batch_id="b", received_at=RECEIVED, window=None)
    cpu = time.process_time() - start
    assert len(decoded.rows) == MAX_BATCH_ENTRIES
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    print(json.dumps({"cpu": cpu, "mb": grown}))


def widest(into: Path, before_package: str) -> None:
    """Each version decodes the widest valid body once per fresh process (peak memory is per process)."""
    print(
        f"widest valid body ({MAX_BATCH_ENTRIES:,} entries x {MAX_ATTRIBUTES} attributes), fresh processes:"
    )
    for distinct in (True, False):
        for label, package in (("before", before_package), ("as shipped", "oglogstream.stack")):
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.ingest_decode_bench", "--widest-child", package]
                + (["--distinct"] if distinct else []),
                check=True,
                capture_output=True,
                text=True,
                timeout=300,
                env={
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join([str(into), os.environ.get("PYTHONPATH", "")]),
                },
            )
            result = json.loads(child.stdout)
            values = "distinct values" if distinct else "the same values in every entry"
            print(f"  {values}, {label}: CPU {result['cpu']:.2f} s, peak RSS growth {result['mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--before", default=BEFORE, help="the revision to compare with (default: %(default)s)"
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"alternating rounds (default {ROUNDS})")
    parser.add_argument("--widest-child", help=argparse.SUPPRESS)
    parser.add_argument("--distinct", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.widest_child:
        _widest_child(args.widest_child, args.distinct)
        return
    print(f"Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="oglog-before-") as into:
        before = _before_batch_decode(args.before, Path(into))
        print(f"before: {args.before}")
        measure("SDK lines", _entries, before, args.rounds)
        measure("full entries", _full_entries, before, args.rounds)
        widest(Path(into), before.__name__.split(".")[0])
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
