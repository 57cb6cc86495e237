"""The processing role alone: how fast the processor drains a backlog into chDB, against the bare insert.

Run from the project root: `.venv/bin/python -m benchmarks.process_drain_bench [--rounds N] [--rows R]`
(about 1 minute for the default 3 rounds of E2E_ROWS rows).

End to end (`stack_ingest_bench`) ends with the processor inserting what ingestion accepted faster than it
could store: after the last 202 only the processor works. This measures that part without ingestion's noise:
400 messages of 1,000 rows (the rows `stack_ingest_bench` sends, as ingestion publishes them) wait in
JetStream, then a `Processor` with the stack's defaults (BATCH_SIZE, FLUSH_TIMEOUT, ...) drains them into
the `logs` table of a real chDB store, timed until `count()` has every row. In each round, alternating: the
bare insert (median of `stack_ingest_bench.BARE_RUNS`, every run printed), the processor as shipped
(`inflight.DEFAULT_INSERTS_IN_FLIGHT` inserts at once), and the processor with one insert in flight (the
behaviour before #14's second insert lane). A real nats-server on a free port; nothing else is started.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from oglogstream.stack.broker import messages
from oglogstream.stack.broker.broker import Broker
from oglogstream.stack.broker.natsd import NatsServer
from oglogstream.stack.config import STREAM_SUBJECT, StackConfig
from oglogstream.stack.http.metrics import Metrics
from oglogstream.stack.ingestion import row_codec, schema
from oglogstream.stack.processing.inflight import DEFAULT_INSERTS_IN_FLIGHT
from oglogstream.stack.processing.process import Processor
from oglogstream.stack.storage.storage import Storage

from .stack_ingest_bench import BATCH_ENTRIES, E2E_ROWS, BareInsert, _bare_line, _entries

DRAIN_TIMEOUT = 120.0


def _messages(prefix: str, rows: int) -> list[tuple[bytes, dict[str, str]]]:
    """`rows` rows as ingestion publishes them: one message of BATCH_ENTRIES rows per request."""
    lines = _entries(rows, prefix)
    received = schema.format_timestamp(dt.datetime.now(dt.timezone.utc))
    out = []
    for k in range(0, len(lines), BATCH_ENTRIES):
        entries = [schema.ENTRY.validate_json(line) for line in lines[k : k + BATCH_ENTRIES]]
        rows = schema.make_rows(entries, batch_id=f"{prefix}-{k}", received_at=received)
        stamps = sorted(row["timestamp"] for row in rows)
        headers = messages.rows_headers(f"{prefix}-{k}", len(rows), stamps[0], stamps[-1])
        out.append((row_codec.dump_rows(rows), headers))
    return out


async def _count(storage: Storage) -> int:
    return int(await storage.run(lambda client: client.command("SELECT count() FROM logs")))


async def drain(broker: Broker, storage: Storage, prefix: str, inserts_in_flight: int, rows: int) -> float:
    """Publish the backlog, then time a default Processor (`inserts_in_flight` apart) until every row is
    stored; returns rows/s. The `logs` table is emptied first, so every round inserts into the same table."""
    await storage.run(lambda client: client.command("TRUNCATE TABLE logs"))
    for payload, headers in _messages(prefix, rows):
        await broker.publish(STREAM_SUBJECT, payload, headers)
    config = StackConfig()
    processor = Processor(
        broker,
        storage,
        Metrics(),
        batch_size=config.batch_size,
        flush_timeout=config.flush_timeout,
        max_retries=config.max_retries,
        shutdown_timeout=config.shutdown_timeout,
        inserts_in_flight=inserts_in_flight,
    )
    started = time.perf_counter()
    processor.start()
    try:
        while await _count(storage) < rows:
            if time.perf_counter() - started > DRAIN_TIMEOUT:
                raise RuntimeError("the backlog was not drained within DRAIN_TIMEOUT")
            await asyncio.sleep(0.05)
        return rows / (time.perf_counter() - started)
    finally:
        await processor.stop()


async def main(rounds: int, rows: int = E2E_ROWS) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="oglog-drain-"))
    nats = NatsServer(workdir / "nats").start()
    bare = BareInsert(_entries(rows, "bare"), workdir)  # its chDB store is the processor's too
    broker = Broker(nats.url)
    try:
        storage = bare.storage
        await storage.run(storage.ensure_schema)
        await broker.start(wait=10)
        sides = [("as shipped", DEFAULT_INSERTS_IN_FLIGHT), ("one insert in flight", 1)]
        for k in range(rounds):
            for name, lanes in sides if k % 2 == 0 else sides[::-1]:
                rates = await asyncio.to_thread(bare.rates)
                rate = await drain(broker, storage, f"r{k}-{lanes}", lanes, rows)
                ratio = rate / statistics.median(rates)
                print(
                    f"round {k + 1}, processor {name} ({lanes}): {rate:,.0f} rows/s = "
                    f"{ratio:.2f}x the bare insert just before ({_bare_line(rates)})",
                    flush=True,
                )
    finally:
        await broker.close()
        bare.storage.close()
        nats.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--rows", type=int, default=E2E_ROWS, help=f"backlog rows (default {E2E_ROWS:,})")
    args = parser.parse_args()
    if args.rounds < 1 or args.rows < BATCH_ENTRIES:
        parser.error(f"--rounds must be >= 1 and --rows >= {BATCH_ENTRIES}")
    asyncio.run(main(args.rounds, args.rows))
