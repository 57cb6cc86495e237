"""Ingestion and end-to-end throughput of the reference stack, against a bare insert measured in the same run.

Run from the project root: `.venv/bin/python -m benchmarks.stack_ingest_bench` (about a minute).

1. bare insert: clickhouse-connect `raw_insert` (JSONEachRow, 50,000-row batches) of exactly the rows the
   stack stores, straight into chDB - the ceiling for the processor.
2. end to end: `POST /logs` batches of 1,000 gzip NDJSON entries (the SDK's format, ids and timestamps set),
   8 requests in flight, until every row is queryable in ClickHouse (default BATCH_SIZE/FLUSH_TIMEOUT).
3. `POST /log` single entries, keep-alive: `wrk` when installed (it costs the server little CPU), else a
   separate Python process with aiohttp (which competes for the 2 cores: the number is then a floor).
The app (ingest+process roles) runs in this process. (2) and (3) are also run against an ingest-only app in
a child process (the seed's separate ingestion service, using the second core), and (3) against a bare
aiohttp handler that only answers 202 - the ceiling of the HTTP layer on this machine.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, TCPConnector, web
from oglogstream.stack import schema
from oglogstream.stack.app import create_app
from oglogstream.stack.config import StackConfig
from oglogstream.stack.natsd import NatsServer
from oglogstream.stack.resources import STORAGE
from oglogstream.stack.storage import LOGS_TABLE, logs_ddl

E2E_ROWS = 400_000
BATCH_ENTRIES = 1_000
IN_FLIGHT = 8
BARE_BATCH = 50_000
SINGLE_SECONDS = 10
SINGLE_CONNECTIONS = 64
DRAIN_TIMEOUT = 60.0
SINGLE_BODY = b'{"level":"info","message":"GET /api/users 200 in 12ms","service":"bench"}'


def _entries(n: int, prefix: str) -> list[bytes]:
    base = time.time()
    lines = []
    for i in range(n):
        created = base + i / 1e5
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1e6):06d}Z"
        lines.append(
            f'{{"id":"{prefix}-{i:x}","timestamp":"{ts}","level":"{("info", "warn", "error")[i % 3]}",'
            f'"service":"web-api","host":"web-1","pid":4242,"message":"GET /api/users/{i} 200 in {i % 97}ms",'
            f'"logger":"app.http","thread":"MainThread","attributes":{{"method":"GET","status":200}}}}'.encode()
        )
    return lines


async def _count(app: web.Application, table: str = LOGS_TABLE) -> int:
    return int(await app[STORAGE].run(lambda c: c.command(f"SELECT count() FROM {table}")))


async def bare_insert(app: web.Application, lines: list[bytes]) -> float:
    """Rows/s of raw_insert of the stored rows (as ingest builds them) into a table with the same DDL."""
    entries = [schema.ENTRY.validate_json(line) for line in lines]
    rows = schema.make_rows(
        entries,
        batch_id="bare",
        received_at=schema.format_timestamp(
            __import__("datetime").datetime.now(__import__("datetime").timezone.utc)
        ),
    )
    payloads = [schema.dumps(rows[i : i + BARE_BATCH]) for i in range(0, len(rows), BARE_BATCH)]
    storage = app[STORAGE]
    await storage.run(lambda c: c.command(logs_ddl(retention_days=30, table="bench_bare")))
    started = time.perf_counter()
    for payload in payloads:
        await storage.run(lambda c, p=payload: c.raw_insert("bench_bare", None, p, fmt="JSONEachRow"))
    elapsed = time.perf_counter() - started
    assert await _count(app, "bench_bare") == len(rows)
    await storage.run(lambda c: c.command("DROP TABLE bench_bare SYNC"))
    return len(rows) / elapsed


async def end_to_end(app: web.Application, url: str, lines: list[bytes], run: str) -> tuple[float, float]:
    """(logs/s until all are queryable, logs/s until all were accepted with 202)."""
    bodies = [
        gzip.compress(b"\n".join(lines[i : i + BATCH_ENTRIES]) + b"\n")
        for i in range(0, len(lines), BATCH_ENTRIES)
    ]
    # Each run starts from an empty table, so background merges of earlier runs do not bias the order.
    await app[STORAGE].run(lambda c: c.command(f"TRUNCATE TABLE {LOGS_TABLE} SYNC"))
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for k, body in enumerate(bodies):
        queue.put_nowait((k, body))

    async def worker(session: ClientSession) -> None:
        while not queue.empty():
            k, body = queue.get_nowait()
            headers = {
                "Content-Type": "application/x-ndjson",
                "Content-Encoding": "gzip",
                "X-Oglog-Batch-Id": f"{run}-{k}",
            }
            async with session.post(f"{url}/logs", data=body, headers=headers) as resp:
                assert resp.status == 202, (resp.status, await resp.text())

    started = time.perf_counter()
    async with ClientSession(connector=TCPConnector(limit=IN_FLIGHT)) as session:
        await asyncio.gather(*(worker(session) for _ in range(IN_FLIGHT)))
    accepted = time.perf_counter() - started
    deadline = started + DRAIN_TIMEOUT
    while await _count(app) < len(lines):
        if time.perf_counter() > deadline:
            raise RuntimeError("end to end: rows not all stored within the drain timeout")
        await asyncio.sleep(0.02)
    stored = time.perf_counter() - started
    return len(lines) / stored, len(lines) / accepted


def _python_load(url: str, seconds: float, connections: int, result: multiprocessing.Queue) -> None:
    async def run() -> int:
        done = 0
        stop = time.perf_counter() + seconds
        async with ClientSession(connector=TCPConnector(limit=connections)) as session:

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < stop:
                    async with session.post(
                        f"{url}/log", data=SINGLE_BODY, headers={"Content-Type": "application/json"}
                    ) as resp:
                        await resp.read()
                        if resp.status == 202:
                            done += 1

            await asyncio.gather(*(worker() for _ in range(connections)))
        return done

    result.put(asyncio.run(run()) / seconds)


def single_entry(url: str, workdir: Path) -> tuple[float, str]:
    """Requests/s of POST /log and the tool that measured it (runs in a child process)."""
    wrk = shutil.which("wrk")
    if wrk:
        script = workdir / "post.lua"
        script.write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(SINGLE_BODY.decode())}\n"
        )
        out = subprocess.run(
            [wrk, "-t1", f"-c{SINGLE_CONNECTIONS}", f"-d{SINGLE_SECONDS}s", "-s", str(script), f"{url}/log"],
            capture_output=True,
            text=True,
            check=True,
            timeout=SINGLE_SECONDS + 30,
        ).stdout
        if "Non-2xx" in out or "Socket errors" in out:
            raise RuntimeError(f"wrk saw errors:\n{out}")
        rate = next(float(line.split()[1]) for line in out.splitlines() if line.startswith("Requests/sec"))
        return rate, f"wrk -t1 -c{SINGLE_CONNECTIONS}"
    ctx = multiprocessing.get_context("spawn")
    result: multiprocessing.Queue = ctx.Queue()
    proc = ctx.Process(target=_python_load, args=(url, SINGLE_SECONDS, SINGLE_CONNECTIONS, result))
    proc.start()
    rate = result.get(timeout=SINGLE_SECONDS + 60)
    proc.join(10)
    return rate, f"aiohttp client process, {SINGLE_CONNECTIONS} connections"


def _child_servers(nats_url: str, urls: multiprocessing.Queue, stop: Any) -> None:
    """Child process: an ingest-only app (the seed's separate ingestion service) and a bare aiohttp app."""

    async def bare(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "accepted"}, status=202)

    async def run() -> None:
        bare_app = web.Application()
        bare_app.router.add_post("/log", bare)
        runners = [
            web.AppRunner(
                create_app(StackConfig(roles=("ingest",), nats_url=nats_url)),
                handle_signals=False,
                access_log=None,
            ),
            web.AppRunner(bare_app, handle_signals=False, access_log=None),
        ]
        found = []
        for runner in runners:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            found.append("http://{}:{}".format(*runner.addresses[0][:2]))
        urls.put(found)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, stop.wait)
        for runner in runners:
            await runner.cleanup()

    asyncio.run(run())


async def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="oglog-bench-"))
    nats = NatsServer(workdir / "nats").start()
    config = StackConfig(
        roles=("ingest", "process"), nats_url=nats.url, clickhouse_dsn=f"chdb://{workdir / 'clickhouse'}"
    )
    app = create_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    urls: multiprocessing.Queue = ctx.Queue()
    child = ctx.Process(target=_child_servers, args=(nats.url, urls, stop), daemon=True)
    loop = asyncio.get_running_loop()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = "http://{}:{}".format(*runner.addresses[0][:2])
        child.start()
        ingest_url, bare_url = await loop.run_in_executor(None, urls.get, True, 60)

        bare = await bare_insert(app, _entries(E2E_ROWS, "bare"))
        e2e, accept = await end_to_end(app, url, _entries(E2E_ROWS, "one"), "one")
        split, split_accept = await end_to_end(app, ingest_url, _entries(E2E_ROWS, "two"), "two")
        single, tool = await loop.run_in_executor(None, single_entry, url, workdir)
        single_split, _ = await loop.run_in_executor(None, single_entry, ingest_url, workdir)
        ceiling, _ = await loop.run_in_executor(None, single_entry, bare_url, workdir)

        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, {E2E_ROWS:,} rows per run")
        print(f"bare raw_insert (JSONEachRow, {BARE_BATCH:,} rows/insert): {bare:,.0f} rows/s")
        print(
            f"end to end, one process (ingest+process roles; POST /logs x{BATCH_ENTRIES} gzip NDJSON, "
            f"{IN_FLIGHT} in flight, until queryable): {e2e:,.0f} logs/s = {e2e / bare:.2f}x bare insert "
            f"(202s alone: {accept:,.0f} logs/s)"
        )
        print(
            f"end to end, two processes (ingest | process): {split:,.0f} logs/s = {split / bare:.2f}x bare "
            f"insert (202s alone: {split_accept:,.0f} logs/s)"
        )
        print(
            f"POST /log ({tool}, {SINGLE_SECONDS}s): one process {single:,.0f} req/s, ingest-only process "
            f"{single_split:,.0f} req/s; bare aiohttp 202 handler {ceiling:,.0f} req/s "
            f"(ratio {single_split / ceiling:.2f})"
        )
    finally:
        stop.set()
        child.join(30)
        await runner.cleanup()
        nats.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
