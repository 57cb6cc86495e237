"""The nats-server keeper: a dead server comes back on the same port and store; one that cannot come back
makes the keeper give up with a reason (the supervisor then exits 1); settings are validated."""

from __future__ import annotations

import asyncio
import signal
import socket
from pathlib import Path

import pytest
from oglogstream.stack.healing import NatsKeeper
from oglogstream.stack.natsd import NatsServer


async def _until(probe: object, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not probe():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_killed_server_is_restarted_on_the_same_port(tmp_path: Path) -> None:
    """SIGKILL -> a new process listening on the same URL, `on_restart` told its pid."""
    server = NatsServer(tmp_path / "nats").start()
    pids: list[int] = []
    keeper = NatsKeeper(server, on_restart=pids.append)
    stop = asyncio.Event()
    watching = asyncio.create_task(keeper.watch(stop))
    try:
        assert server.process is not None
        first = server.process.pid
        server.process.send_signal(signal.SIGKILL)
        await _until(lambda: keeper.restarts == 1, 20)
        assert pids == [server.process.pid] and pids[0] != first
        with socket.create_connection((server.host, server.port), timeout=2):
            pass
    finally:
        stop.set()
        assert await asyncio.wait_for(watching, 5) is None
        server.stop()


async def test_keeper_gives_up_with_the_reason(tmp_path: Path) -> None:
    """When the port is taken by someone else the server cannot restart: after max_restarts the reason."""
    server = NatsServer(tmp_path / "nats").start()
    keeper = NatsKeeper(server, backoff_base=0.05, max_restarts=2)
    squatter = socket.socket()
    try:
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(10)
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((server.host, server.port))
        squatter.listen()
        reason = await asyncio.wait_for(keeper.watch(asyncio.Event()), 60)
        assert reason is not None and "gave up after 2 restarts" in reason and "nats-server.log" in reason
        assert keeper.restarts == 0
    finally:
        squatter.close()
        server.stop()


def test_keeper_settings_are_validated(tmp_path: Path) -> None:
    """Nonsense settings fail at construction, naming the setting."""
    server = NatsServer(tmp_path / "nats")
    with pytest.raises(ValueError, match="backoff_base"):
        NatsKeeper(server, backoff_base=0)
    with pytest.raises(ValueError, match="max_restarts"):
        NatsKeeper(server, max_restarts=-1)
