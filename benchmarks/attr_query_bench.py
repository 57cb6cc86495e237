"""Cost of attribute filters at 10M rows, against a plain `service` filter measured in the same run, and the
bytes on disk the typed attribute columns add.

Run from the project root: `.venv/bin/python -m benchmarks.attr_query_bench` (a few minutes; `--rows N` for a
smaller table, `--runs N` for fewer timed runs of each measurement: RUNS per query, INSERT_RUNS with
`--inserts`, _AB_ROUNDS with `--rows-before`).

The `logs` table is made by the stack's own migrations (`Storage.ensure_schema`, default settings) in a chDB
store in a temp dir, then filled by ClickHouse itself (`INSERT ... SELECT FROM numbers()`, 1M rows per
insert, spread over the last 24 hours, background merges awaited). Every row has the attributes
`request_id` (unique string), `user` (5,000 values), `status` (number: 200 90%, 404 5%, 500 4%, 503 1%),
`duration_ms` (number, 0..999.9), `cache_hit` (bool); 1% of rows also carry `feature_flag`. Numbers and
booleans are in `attributes` as text and in `attributes_number` / `attributes_bool`, as the processor
stores them. Queries are the query role's SQL (`query_sql.latest_logs`, `query_sql.stats`) with filters
parsed by `Filters.from_query`, through the Storage's client, one at a time; p50 / p90 of RUNS.

Insert side (`--inserts`, milliseconds per 10,000 rows with `pid` and four attributes, string-only or with
two numbers and a bool), against the bare `raw_insert` of the string-only rows into chDB in the same run:
the `raw_insert` of typed rows with their maps; ingestion's row building (`schema.rows_from_json` +
`row_codec.dump_rows`, where the typed maps are made now); and the processor's upgrade of a message of the
release before (`messages.upgrade_payload`, the only processing-side step left, for messages without the
row-format header).

`--rows-before REV` (no chDB): ingestion's row building on 1,000 SDK-shaped entries (no attributes, string
attributes, typed attributes), `schema.py` of git revision REV against the working tree's, interleaved runs in
one process; prints the best run of each and the ratio after/before.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from typing import Any

from multidict import MultiDict
from oglogstream.stack.broker import messages
from oglogstream.stack.ingestion import row_codec, schema
from oglogstream.stack.ingestion.row_codec import dump_rows
from oglogstream.stack.query import query_sql
from oglogstream.stack.query.filters import Filters
from oglogstream.stack.storage.migrations import LOGS_TABLE, TYPED_ATTRIBUTE_COLUMNS
from oglogstream.stack.storage.storage import Storage

ROWS = 10_000_000
CHUNK = 1_000_000
SPAN_SECONDS = 24 * 3600
WARMUP = 2
RUNS = 15
SETTLE_TIMEOUT = 120.0
INSERT_ROWS = 10_000
INSERT_RUNS = 9
_RATIO = "\N{MULTIPLICATION SIGN} baseline p50"

_INSERT = """
INSERT INTO logs (timestamp, received_at, id, service, level, message, logger, host, pid,
                  attributes, attributes_number, attributes_bool)
SELECT
    now64(6) - toIntervalMicrosecond({span_us} - intDiv(number * {span_us}, {total})) AS ts,
    ts,
    concat('bench-', toString(number)),
    concat('svc-', toString(intHash32(number) % 20)),
    multiIf(r < 60, 'info', r < 75, 'debug', r < 90, 'warn', r < 98, 'error', 'fatal'),
    concat('GET /api/v1/orders/', toString(number % 50000), ' done'),
    'app.http',
    concat('host-', toString(number % 16)),
    1000 + number % 64,
    mapUpdate(
        map('request_id', toString(number), 'user', concat('u', toString(intHash32(number + 2) % 5000)),
            'status', toString(status), 'duration_ms', toString(duration), 'cache_hit', toString(hit)),
        if(number % 100 = 42, map('feature_flag', 'beta'), map())),
    map('status', toFloat64(status), 'duration_ms', duration),
    map('cache_hit', hit)
FROM (
    SELECT number,
           intHash32(number + 9) % 100 AS r,
           multiIf(r2 < 90, 200, r2 < 95, 404, r2 < 99, 500, 503) AS status,
           (intHash32(number + 5) % 10000) / 10 AS duration,
           intHash32(number + 7) % 3 = 0 AS hit
    FROM (SELECT number, intHash32(number + 11) % 100 AS r2 FROM numbers({start}, {count}))
)
"""

#: (label, query string); the first of each group is the baseline of that group.
LATEST = (
    ("service=svc-3 (baseline)", "service=svc-3"),
    ("attr.status=503 (1% of rows)", "attr.status=503"),
    ("attr.user=u42 (0.02%)", "attr.user=u42"),
    ("attr.duration_ms>500 (50%)", "attr.duration_ms>500"),
    ("attr.duration_ms>=999.5 (0.05%)", "attr.duration_ms>=999.5"),
    ("attr.feature_flag=* (1%, exists)", "attr.feature_flag=*"),
    ("service=svc-3 & attr.status=503", "service=svc-3&attr.status=503"),
)
STATS = (
    ("no filter (baseline: full count)", ""),
    ("service=svc-3", "service=svc-3"),
    ("attr.status=503", "attr.status=503"),
    ("attr.duration_ms>500", "attr.duration_ms>500"),
    ("attr.feature_flag=*", "attr.feature_flag=*"),
    ("attr.user=u42", "attr.user=u42"),
)


def _filters(query: str) -> Filters:
    pairs = [tuple([*part.split("=", 1), ""][:2]) for part in query.split("&") if part]
    # A strict comparison arrives without '=' (see AttrFilter.parse): give it the query-string's split.
    pairs = [(k, v) if not (">" in k or "<" in k) or v else (k, "") for k, v in pairs]
    return Filters.from_query(MultiDict(pairs))


def _timed(fn: Any, runs: int = RUNS) -> tuple[float, float]:
    for _ in range(WARMUP):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.9) - 1)]


def _settle(client: Any) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        if not int(client.command("SELECT count() FROM system.merges")):
            return
        time.sleep(0.5)


def _body(typed: bool, first: int) -> bytes:
    """A request body of INSERT_ROWS entries as the SDK sends them (JSON array, id and timestamp given)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    entries = []
    for i in range(first, first + INSERT_ROWS):
        attributes: dict[str, Any] = {"path": "/api/v1/cart", "user": f"u{i % 5000}"}
        if typed:
            attributes |= {"status": 200, "duration_ms": i % 1000 / 10, "cache_hit": i % 3 == 0}
        else:
            attributes |= {"status": "200", "region": "eu-west-1"}
        entries.append(
            {
                "id": f"ins-{i}",
                "timestamp": now,
                "level": "info",
                "message": f"GET /api/v1/cart {i}",
                "service": "api",
                "pid": 4242,
                "attributes": attributes,
            }
        )
    return json.dumps(entries, separators=(",", ":")).encode()


def _rows(body: bytes) -> list[dict[str, Any]]:
    return schema.rows_from_json(
        body, batch_id="bench", received_at=time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    )


def _legacy(body: bytes) -> bytes:
    """The payload the release before published for `body`: the rows without typed maps."""
    maps = (schema.NUMBER_MAP, schema.BOOL_MAP)
    return row_codec.dumps([{k: v for k, v in row.items() if k not in maps} for row in _rows(body)])


def _inserts(client: Any, runs: int = INSERT_RUNS) -> None:
    print(f"\n| per {INSERT_ROWS:,} rows | p50 ms | {_RATIO} |\n|---|---|---|")
    first = 0
    bare = None

    def insert(data: bytes) -> Any:
        return lambda: client.raw_insert(LOGS_TABLE, None, data, fmt="JSONEachRow")

    def build(body: bytes) -> Any:
        return lambda: row_codec.dump_rows(_rows(body))

    def upgrade(data: bytes) -> Any:
        return lambda: messages.upgrade_payload(data)

    cases: list[tuple[str, bool, Any]] = [
        ("bare raw_insert, string-only rows (baseline)", False, lambda b: insert(dump_rows(_rows(b)))),
        ("raw_insert, typed rows with their maps", True, lambda b: insert(dump_rows(_rows(b)))),
        ("ingestion: rows_from_json + dump_rows, string-only", False, build),
        ("ingestion: rows_from_json + dump_rows, typed (maps made)", True, build),
        ("processing: upgrade of an old message, string-only", False, lambda b: upgrade(_legacy(b))),
        ("processing: upgrade of an old message, typed", True, lambda b: upgrade(_legacy(b))),
    ]
    # Round-robin: each run times every case once, so all cases see the same load on a shared machine.
    samples: list[list[float]] = [[] for _ in cases]
    for _ in range(runs):
        for k, (_, typed, make) in enumerate(cases):
            step = make(_body(typed, first))  # prepared outside the timing
            first += INSERT_ROWS
            start = time.perf_counter()
            step()
            samples[k].append((time.perf_counter() - start) * 1000)
    for (label, _, _), times in zip(cases, samples, strict=True):
        p50 = statistics.median(times)
        bare = bare or p50
        print(f"| {label} | {p50:.1f} | {p50 / bare:.2f} |")


_AB_ENTRIES = 1_000
_AB_ROUNDS = 25
_AB_CALLS = 20


#: Where schema.py was: in ingestion/ since the stack's rooms (b62ce89), in reference_stack/ itself before.
_SCHEMA_PATHS = ("reference_stack/ingestion/schema.py", "reference_stack/schema.py")


def _schema_at(rev: str) -> Any:
    """schema.py as of git revision `rev` (either place in _SCHEMA_PATHS), loaded next to the current one; its
    relative imports (`.timestamps`) resolve to today's modules of `oglogstream.stack.ingestion`.
    Raises CalledProcessError if `rev` has neither file."""
    for path in _SCHEMA_PATHS:
        shown = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True)
        if shown.returncode == 0:
            break
    else:
        shown.check_returncode()
    module = types.ModuleType("oglogstream.stack.ingestion._schema_before")
    module.__package__ = "oglogstream.stack.ingestion"
    sys.modules[module.__name__] = module  # pydantic resolves the TypedDicts through sys.modules
    exec(compile(shown.stdout.decode(), f"{rev}:schema.py", "exec"), module.__dict__)
    return module


def _rows_before(rev: str, rounds: int = _AB_ROUNDS) -> None:
    before = _schema_at(rev)
    received = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())

    def run(mod: Any, body: bytes) -> float:
        # dump_rows left schema.py for row_codec.py in 7bb10ca: a revision before it has its own
        dump = getattr(mod, "dump_rows", None) or row_codec.dump_rows
        start = time.perf_counter()
        for _ in range(_AB_CALLS):
            dump(mod.rows_from_json(body, batch_id="b", received_at=received))
        return (time.perf_counter() - start) / _AB_CALLS * 1000

    print(f"\n| per {_AB_ENTRIES:,} entries, best run | {rev} ms | now ms | now / {rev} |\n|---|---|---|---|")
    for label, attributes in (
        ("no attributes", None),
        ("string attributes", {"user": "u7", "path": "/api/v1/cart"}),
        ("typed attributes", {"user": "u7", "status": 200, "duration_ms": 12.5, "hit": True}),
    ):
        entries = []
        for i in range(_AB_ENTRIES):
            entry: dict[str, Any] = {
                "id": f"b1-{i}",
                "timestamp": received,
                "level": "info",
                "message": f"GET /api/v1/cart handled in {i} ms",
                "service": "api",
                "logger": "app.views",
                "host": "web-1",
                "pid": 4242,
                "thread": "MainThread",
            }
            if attributes is not None:
                entry["attributes"] = attributes
            entries.append(entry)
        body = json.dumps(entries, separators=(",", ":")).encode()
        old, new = [], []
        for _ in range(rounds):  # interleaved: both see the same load
            old.append(run(before, body))
            new.append(run(schema, body))
        print(f"| {label} | {min(old):.2f} | {min(new):.2f} | {min(new) / min(old):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS)
    parser.add_argument("--runs", type=int, help=f"timed runs of each measurement (default {RUNS} per query, "
                        f"{INSERT_RUNS} with --inserts, {_AB_ROUNDS} with --rows-before)")
    parser.add_argument("--inserts", action="store_true", help="only the insert-side measurement")
    parser.add_argument("--rows-before", metavar="REV", help="ingestion's row building: REV's schema vs now")
    args = parser.parse_args()
    if args.rows < 1 or (args.runs is not None and args.runs < 1):
        parser.error("--rows and --runs must be >= 1")
    if args.rows_before:
        _rows_before(args.rows_before, args.runs or _AB_ROUNDS)
        return
    workdir = tempfile.mkdtemp(prefix="oglog-attr-bench-")
    storage = Storage(f"chdb://{workdir}/clickhouse")
    try:
        client = storage.client
        storage.ensure_schema()
        if args.inserts:
            _inserts(client, args.runs or INSERT_RUNS)
            return
        start = time.perf_counter()
        for first in range(0, args.rows, CHUNK):
            count = min(CHUNK, args.rows - first)
            client.command(
                _INSERT.format(span_us=SPAN_SECONDS * 10**6, total=args.rows, start=first, count=count)
            )
        _settle(client)
        print(f"{args.rows:,} rows generated in {time.perf_counter() - start:.0f} s")
        sizes = dict(
            client.query(
                "SELECT name, data_compressed_bytes FROM system.columns "
                f"WHERE database = currentDatabase() AND table = '{LOGS_TABLE}'"
            ).result_rows
        )
        total = sum(sizes.values())
        typed = sum(sizes[name] for name in TYPED_ATTRIBUTE_COLUMNS)
        print("\n| bytes on disk (compressed column data) | MB |\n|---|---|")
        print(f"| without the typed columns (the previous release's table) | {(total - typed) / 1e6:.1f} |")
        print(f"| with them | {total / 1e6:.1f} (+{typed / max(total - typed, 1):.1%}) |")
        for name in ("attributes", *TYPED_ATTRIBUTE_COLUMNS):
            print(f"| of which `{name}` | {sizes[name] / 1e6:.1f} |")
        now_us = time.time_ns() // 1000
        print(f"\n| latest 100 (`/api/logs`) | p50 ms | p90 ms | {_RATIO} |\n|---|---|---|---|")
        base = None
        for label, query in LATEST:
            filters = _filters(query)
            p50, p90 = _timed(
                lambda f=filters: query_sql.latest_logs(client, f, None, 100, 0, now_us), args.runs or RUNS
            )
            base = base or p50
            print(f"| {label} | {p50:.1f} | {p90:.1f} | {p50 / base:.2f} |")
        print(f"\n| `/api/stats` (all matching rows) | p50 ms | p90 ms | {_RATIO} |\n|---|---|---|---|")
        base = None
        for label, query in STATS:
            filters = _filters(query)
            p50, p90 = _timed(lambda f=filters: query_sql.stats(client, f), args.runs or RUNS)
            base = base or p50
            print(f"| {label} | {p50:.1f} | {p90:.1f} | {p50 / base:.2f} |")
    finally:
        storage.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
