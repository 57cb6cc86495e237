"""The live tail's own NATS connection (engineer's note on r8): a backlog of live copies the process cannot
read gets nats-server to cut the connection it arrives on (a slow consumer). On the broker's connection that
cut the processor's pulls and ingestion's publishes too; on its own it cuts only itself, and the hub hears of
it (a gap: its clients are closed with "entries may be missing")."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from oglogstream.stack.broker.broker import Broker
from oglogstream.stack.broker.natsd import find_nats_server, free_port
from oglogstream.stack.config import LIVE_SUBJECT

pytestmark = pytest.mark.timeout(120)

#: nats-server's `max_pending` for these tests (64 MiB by default): a fault injected at the server, so that a
#: few MB of backlog - what the loopback socket buffers do not absorb - make it cut the reader.
MAX_PENDING = "1MB"
#: Live copies published while the reader's event loop is blocked: far past the socket buffers plus 1 MB.
FLOOD_MESSAGES, FLOOD_BYTES = 60, 512 * 1024


@pytest.fixture
def strict_nats(tmp_path: Path) -> Iterator[str]:
    """A nats-server with JetStream and max_pending = MAX_PENDING; its URL."""
    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(
        f'host: 127.0.0.1\nport: {port}\nmax_pending: {MAX_PENDING}\n'
        f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
    )
    process = subprocess.Popen([find_nats_server(), "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError("nats-server did not listen")
        yield f"nats://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def _flood(url: str) -> None:
    """Publish the live copies from a connection of its own (another thread, its own loop)."""

    async def publish() -> None:
        nc = await nats.connect(url)
        for _ in range(FLOOD_MESSAGES):
            await nc.publish(LIVE_SUBJECT, b"x" * FLOOD_BYTES)
        await nc.flush(30)
        await nc.close()

    asyncio.run(publish())


async def _flood_while_blocked(url: str) -> None:
    """Flood while this event loop is blocked (nothing reads any of its sockets), as a long stall would."""
    thread = threading.Thread(target=_flood, args=(url,))
    thread.start()
    thread.join(60)  # blocks the loop on purpose
    assert not thread.is_alive()


async def _until(condition: object, timeout: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def _received(_payload: bytes) -> None:
    return None


async def _ignored(_msg: object) -> None:
    return None


async def test_a_live_backlog_cuts_only_the_live_connection(strict_nats: str) -> None:
    """The live subscription's connection is cut and reported as a gap; the broker's stays up, never
    reconnected."""
    broker = Broker(strict_nats)
    await broker.start(wait=10)
    gaps: list[str] = []
    try:
        assert broker.is_connected
        subscription = await broker.subscribe_live(
            _received, on_gap=lambda reason, _detail: gaps.append(reason), timeout=5
        )
        await _flood_while_blocked(strict_nats)
        await _until(lambda: "nats_disconnect" in gaps)
        await _until(lambda: subscription.connected)  # and it comes back by itself
        assert broker.is_connected and broker.nc.stats["reconnects"] == 0
        await subscription.unsubscribe()
    finally:
        await broker.close()


async def test_the_same_backlog_on_the_broker_connection_cuts_it(strict_nats: str) -> None:
    """Why the live tail has its own connection: subscribed on the broker's (as before), the same backlog
    gets the broker's connection cut - the one the processor and ingestion use."""
    broker = Broker(strict_nats)
    await broker.start(wait=10)
    try:
        await broker.nc.subscribe(LIVE_SUBJECT, cb=_ignored)
        await broker.nc.flush()
        await _flood_while_blocked(strict_nats)
        await _until(lambda: broker.nc.stats["reconnects"] >= 1)
    finally:
        await broker.close()
