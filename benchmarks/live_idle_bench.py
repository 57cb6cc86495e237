"""Live-tail clients that never read must not slow the stack (r8 finding 1).

Command (from the project root, 1-2 minutes): `.venv/bin/python -m benchmarks.live_idle_bench [N ...]
[--entries 100000]`

Starts `oglog stack up` with its defaults (2 ingest workers, chDB) in a child process. For each N (default
0 10 50): one WebSocket client that reads everything, N raw sockets that upgrade to /ws/live and never read
(4 KiB receive buffer), then `--entries` (default TOTAL, 100,000) in POSTs of 10,000 entries one after
another. Reports the time until all are queryable (GET /api/stats), the longest POST, and what the reading
client got: entries plus the counts of the drop notices must add up to all entries exactly (the notices are
exact). The N = 0 run is the baseline of the same run: the ratio column is time-to-queryable over it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import socket
import time

import httpx
from aiohttp import ClientSession, WSMsgType

from .live_latency_bench import stack_up

TOTAL, BATCH = 100_000, 10_000
SETTLE_SECONDS = 2.0  # the reader is done once this long passes without a message
QUERYABLE_TIMEOUT = 120.0


def _idle_socket(port: int) -> socket.socket:
    """Upgrade to /ws/live, then never read (the kernel's receive buffer kept small)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise SystemExit(f"idle client refused: {head[:200]!r}")
    return sock


async def _run(base: str, port: int, idle: int, total: int) -> dict[str, float]:
    run = f"idle{idle}-{int(time.time() * 1000) % 10**8}"
    got, dropped = 0, 0
    async with ClientSession() as session:
        ws = await session.ws_connect(f"{base}/ws/live", max_msg_size=2**24)

        async def read() -> None:
            nonlocal got, dropped
            while True:
                msg = await ws.receive(timeout=SETTLE_SECONDS if got + dropped else None)
                if msg.type != WSMsgType.TEXT:
                    return
                data = json.loads(msg.data)
                if data.get("type") == "dropped":
                    dropped += data["count"]
                elif data.get("service") == run:
                    got += 1

        reader = asyncio.create_task(read())
        sockets = [_idle_socket(port) for _ in range(idle)]
        started, longest = time.monotonic(), 0.0
        async with httpx.AsyncClient(timeout=60) as http:
            for b in range(total // BATCH):
                body = [{"id": f"{run}-{b}-{i}", "message": "x" * 40, "service": run, "level": "info"}
                        for i in range(BATCH)]
                sent = time.monotonic()
                response = await http.post(f"{base}/logs", json=body)
                longest = max(longest, time.monotonic() - sent)
                if response.status_code != 202:
                    raise SystemExit(f"POST answered {response.status_code}: {response.text[:300]}")
            while True:
                stats = (await http.get(f"{base}/api/stats", params={"service": run})).json()
                if stats["total_logs"] >= total or time.monotonic() - started > QUERYABLE_TIMEOUT:
                    break
                await asyncio.sleep(0.1)
            queryable = time.monotonic() - started
        with contextlib.suppress(asyncio.TimeoutError):  # SETTLE_SECONDS without a message: done
            await reader
        await ws.close()
        for sock in sockets:
            sock.close()
    return {"queryable": queryable, "longest_post": longest, "got": got, "dropped": dropped,
            "stored": stats["total_logs"]}


async def _main(base: str, port: int, counts: list[int], total: int) -> None:
    rows = []
    for idle in counts:
        rows.append((idle, await _run(base, port, idle, total)))
        await asyncio.sleep(2)  # the idle sockets' closes are noticed before the next run
    baseline = rows[0][1]["queryable"] if rows and rows[0][0] == 0 else None
    print(f"\nLive tail with idle clients ({os.cpu_count()} CPUs; {total:,} entries in POSTs of {BATCH:,})")
    print("| idle clients | queryable after | x baseline | longest POST | reader got + dropped | stored |")
    print("|---|---|---|---|---|---|")
    for idle, r in rows:
        ratio = f"{r['queryable'] / baseline:.2f}" if baseline else "-"
        exact = "exact" if r["got"] + r["dropped"] == total else "NOT EXACT"
        print(f"| {idle} | {r['queryable']:.2f} s | {ratio} | {r['longest_post']:.2f} s | "
              f"{r['got']:,} + {r['dropped']:,} ({exact}) | {r['stored']:,} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("counts", nargs="*", type=int, metavar="N", help="idle clients per run (0 10 50)")
    parser.add_argument("--entries", type=int, default=TOTAL,
                        help=f"entries posted per run, a multiple of {BATCH:,} (default {TOTAL:,})")
    args = parser.parse_args()
    if args.entries < BATCH or args.entries % BATCH or any(n < 0 for n in args.counts):
        parser.error(f"--entries must be a positive multiple of {BATCH:,} and N >= 0")
    with stack_up("oglog-live-idle-bench-") as (base, port):
        asyncio.run(asyncio.wait_for(_main(base, port, args.counts or [0, 10, 50], args.entries), 600))


if __name__ == "__main__":
    main()
