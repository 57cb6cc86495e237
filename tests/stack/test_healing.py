"""The nats-server keeper: a dead server comes back on the same port and store; one that cannot come back
makes the keeper give up with a reason (the supervisor then exits 1); settings are validated."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
from pathlib import Path

import pytest
from oglogstream.stack.broker.natsd import NatsServer
from oglogstream.stack.server.healing import NatsKeeper, exit_reason


async def _until(probe: object, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not probe():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


DOCS = Path(__file__).parents[2] / "docs" / "stack.md"


def _documented_lines() -> list[re.Pattern[str]]:
    """The healing log lines docs/stack.md quotes, as patterns: any number where the docs show one, anything
    where they show a <placeholder>."""
    text = DOCS.read_text()
    section = text[text.index("* **Healing**") :]
    section = section[: section.index("\n* **")]
    quoted = [" ".join(q.split()) for q in re.findall(r"`(nats-server [^`]+)`", section)]
    patterns = []
    for line in quoted:
        pieces = re.split(r"(\d+(?:\.\d+)*|<[^>]+>)", line)
        patterns.append(
            re.compile(
                "".join(
                    "[0-9.]+" if re.fullmatch(r"\d+(?:\.\d+)*", p) else ".+" if p[:1] == "<" else re.escape(p)
                    for p in pieces
                )
            )
        )
    return patterns


async def test_killed_server_is_restarted_on_the_same_port(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL -> a new process listening on the same URL, `on_restart` told its pid; the lines it logs are
    the ones docs/stack.md quotes."""
    caplog.set_level(logging.INFO, logger="oglogstream.stack.server.healing")
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
    logged = [r.getMessage() for r in caplog.records if r.name == "oglogstream.stack.server.healing"]
    assert logged == [
        "nats-server is down (killed by SIGKILL); restarting in 0.5s",
        f"nats-server restarted (pid {pids[0]}) on {server.url}",
    ]
    documented = _documented_lines()
    for message in logged:
        assert any(p.fullmatch(message) for p in documented), (message, documented)


def test_exit_reasons_name_the_signal() -> None:
    """A negative returncode is the signal that ended the process, by name."""
    assert [exit_reason(c) for c in (0, 1, -9, -15, -200)] == [
        "exit status 0", "exit status 1", "killed by SIGKILL", "killed by SIGTERM", "killed by signal 200"
    ]


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
