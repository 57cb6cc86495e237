"""Live-tail latency: from ingestion's 202 to the entry arriving on a /ws/live WebSocket, under steady load.

Run from the project root: `.venv/bin/python -m benchmarks.live_latency_bench` (about a minute;
`--phase-seconds S` runs each phase of PHASES for S seconds instead of its own 10-15).

The stack is `oglog stack up` in a child process (nats-server + ingest, process and query roles in one
process, chDB storage: what a single-node user runs, including the processor's inserts competing for the same
cores). The client is one asyncio process: a poster sends `POST /logs` NDJSON batches at a steady rate (each
batch scheduled at t0 + k/rate, not waiting for the previous one), and a WebSocket client on `/ws/live` (no
filter) stamps every message on arrival. Per entry:

* `202->ws`: WebSocket arrival minus the moment the poster had the batch's 202. Ingestion publishes to the
  live subject right after the JetStream ack, before it answers, so this can be negative (the entry overtook
  its own HTTP response); that is the number the seed's "live tail delivers within 50 ms" is about.
* `send->ws`: WebSocket arrival minus the moment the POST was sent: the whole path a log line takes.
* baseline, same run: `send->202`, the ingestion round trip (JetStream publish and ack included).

Both ends share one event loop and one monotonic clock, so the numbers include the client's own scheduling
delay; the machine is shared and has 2 cores, so read ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import ClientSession, TCPConnector, WSMsgType

#: (name, batches per second, entries per batch, seconds)
PHASES = (
    ("light", 20, 1, 10),
    ("steady", 100, 10, 15),
    ("heavy", 100, 50, 15),
)
TARGET_P99_MS = 50.0
MAX_IN_FLIGHT = 64
DRAIN_SECONDS = 5.0
START_TIMEOUT = 60.0


@dataclass
class Phase:
    name: str
    sent_at: dict[str, int] = field(default_factory=dict)  # batch -> ns
    accepted_at: dict[str, int] = field(default_factory=dict)  # batch -> ns
    arrived: dict[str, int] = field(default_factory=dict)  # entry id -> ns
    expected: int = 0
    dropped: int = 0
    errors: int = 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"oglog stack up exited with {proc.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{base}/health", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"stack not healthy within {START_TIMEOUT}s")


@contextlib.contextmanager
def stack_up(prefix: str) -> Iterator[tuple[str, int]]:
    """Run `oglog stack up` with its defaults in a temp data dir (name starts with `prefix`).

    Yields (base URL, port) once /health answers 200; stops the stack (terminate, kill after 60 s) and
    removes the data dir on exit. Raises SystemExit if the stack exits or is not healthy in START_TIMEOUT s.
    """
    data_dir = tempfile.mkdtemp(prefix=prefix)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "oglogstream.stack.server.cli", "stack", "up", "--port", str(port)]
    command += ["--data-dir", data_dir, "--log-level", "warn"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        _wait_healthy(base, proc)
        yield base, port
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


def _batch(phase: str, k: int, size: int) -> bytes:
    return b"\n".join(
        json.dumps(
            {
                "id": f"{phase}-{k}-{i}",
                "level": "info",
                "service": "bench",
                "message": f"GET /api/users/{k * size + i} 200 in {i % 97}ms",
                "attributes": {"method": "GET", "status": 200},
            }
        ).encode()
        for i in range(size)
    )


async def _post(
    session: ClientSession, base: str, phase: Phase, key: str, body: bytes, gate: asyncio.Semaphore
):
    async with gate:
        phase.sent_at[key] = time.monotonic_ns()
        try:
            async with session.post(
                f"{base}/logs", data=body, headers={"Content-Type": "application/x-ndjson"}
            ) as response:
                await response.read()
                if response.status == 202:
                    phase.accepted_at[key] = time.monotonic_ns()
                else:
                    phase.errors += 1
        except Exception:
            phase.errors += 1


async def _listen(ws, phases: dict[str, Phase]) -> None:
    async for msg in ws:
        now = time.monotonic_ns()
        if msg.type != WSMsgType.TEXT:
            break
        entry = json.loads(msg.data)
        if entry.get("type") == "dropped":
            for phase in phases.values():  # attributed to the phase running (only one is)
                if phase.expected and len(phase.arrived) < phase.expected:
                    phase.dropped += int(entry["count"])
                    break
            continue
        entry_id = str(entry.get("id", ""))
        name = entry_id.split("-", 1)[0]
        if name in phases:
            phases[name].arrived[entry_id] = now


async def _run_phase(
    session: ClientSession, base: str, phase: Phase, rate: int, size: int, seconds: int
) -> None:
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    total = rate * seconds
    phase.expected = total * size
    bodies = [_batch(phase.name, k, size) for k in range(total)]
    tasks = []
    start = time.monotonic()
    for k in range(total):
        delay = start + k / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_post(session, base, phase, f"{phase.name}-{k}", bodies[k], gate)))
    await asyncio.gather(*tasks)
    deadline = time.monotonic() + DRAIN_SECONDS
    while len(phase.arrived) + phase.dropped < phase.expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _report(phase: Phase, rate: int, size: int) -> bool:
    after_202: list[float] = []
    after_send: list[float] = []
    for entry_id, arrived in phase.arrived.items():
        batch = entry_id.rsplit("-", 1)[0]
        if batch in phase.accepted_at:
            after_202.append((arrived - phase.accepted_at[batch]) / 1e6)
            after_send.append((arrived - phase.sent_at[batch]) / 1e6)
    post = [(phase.accepted_at[b] - phase.sent_at[b]) / 1e6 for b in phase.accepted_at]
    missing = phase.expected - len(phase.arrived)
    print(
        f"{phase.name:7s} {rate} batches/s x {size} = {rate * size} entries/s: "
        f"{len(phase.arrived)}/{phase.expected} delivered, {phase.dropped} dropped (slow client), "
        f"{missing - phase.dropped} missing, {phase.errors} POST errors"
    )
    if not after_202:
        print("   no samples")
        return False
    for label, values in (("202->ws", after_202), ("send->ws", after_send), ("send->202 (baseline)", post)):
        print(
            f"   {label:22s} p50 {_pct(values, 50):7.2f} ms  p90 {_pct(values, 90):7.2f} ms  "
            f"p99 {_pct(values, 99):7.2f} ms  max {max(values):7.2f} ms  "
            f"mean {statistics.fmean(values):7.2f} ms"
        )
    early = sum(1 for v in after_202 if v < 0) / len(after_202)
    p99 = _pct(after_202, 99)
    print(
        f"   {early:.0%} of entries reached the WebSocket before their 202 reached the poster; "
        f"p99 202->ws / p99 send->202 = {p99 / max(_pct(post, 99), 1e-9):.2f}; "
        f"target p99 <= {TARGET_P99_MS:.0f} ms: {'met' if p99 <= TARGET_P99_MS else 'MISSED'}"
    )
    return p99 <= TARGET_P99_MS


async def _main(base: str, phase_seconds: int | None) -> None:
    phases = {name: Phase(name) for name, *_ in PHASES}
    async with ClientSession(connector=TCPConnector(limit=MAX_IN_FLIGHT)) as session:
        ws = await session.ws_connect(f"{base}/ws/live", max_msg_size=0)
        listener = asyncio.create_task(_listen(ws, phases))
        await asyncio.sleep(0.5)  # the subscription is live once the upgrade is done; give it a margin
        for name, rate, size, seconds in PHASES:
            await _run_phase(session, base, phases[name], rate, size, phase_seconds or seconds)
        await ws.close()
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
    print(f"\nLive tail latency (client and stack on this machine, {os.cpu_count()} CPUs)")
    for name, rate, size, _ in PHASES:
        _report(phases[name], rate, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase-seconds", type=int, default=None,
                        help="seconds of every phase (default: each phase's own, PHASES)")
    args = parser.parse_args()
    if args.phase_seconds is not None and args.phase_seconds < 1:
        parser.error("--phase-seconds must be >= 1")
    with stack_up("oglog-live-bench-") as (base, _port):
        asyncio.run(_main(base, args.phase_seconds))


if __name__ == "__main__":
    main()
