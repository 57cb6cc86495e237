"""nats-server SIGKILLed mid-stream under `oglog stack up` (defaults): the supervisor restarts it, ingestion
recovers by itself, and every acknowledged entry is stored exactly once."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from oglogstream.stack.broker.natsd import free_port

from tests.stack.query_helpers import OglogProcess

from .helpers import RetryingPoster, assert_exactly_once, wait_until

pytestmark = pytest.mark.timeout(90)


def _pid(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def test_nats_server_killed_twice_is_restarted_and_nothing_is_lost(tmp_path: Path) -> None:
    """Two SIGKILLs of nats-server while a client posts: restarted each time, 202s resume, exact counts."""
    port, data = free_port(), tmp_path / "data"
    base = f"http://127.0.0.1:{port}"
    pid_file = data / "nats" / "nats-server.pid"
    with OglogProcess(
        ["stack", "up", "--data-dir", str(data), "--port", str(port)], tmp_path / "up.log"
    ) as stack:
        stack.wait_healthy(base)
        poster = RetryingPoster(base, "natskill")
        poster.start()
        try:
            for _ in range(2):
                before = poster.accepted_now()
                wait_until(lambda b=before: poster.accepted_now() >= b + 100, timeout=20, what="posting")
                old = _pid(pid_file)
                os.kill(old, signal.SIGKILL)
                wait_until(
                    lambda o=old: _pid(pid_file) not in (0, o), timeout=20, what="nats-server restarted"
                )
                after = poster.accepted_now()
                wait_until(lambda a=after: poster.accepted_now() >= a + 100, timeout=30, what="202s resumed")
        finally:
            accepted = poster.finish()
        assert poster.statuses[202] > 0
        assert (
            "nats-server is down (killed by SIGKILL)" in stack.output()
            and "nats-server restarted" in stack.output()
        )
        assert_exactly_once(base, "natskill", accepted)
        stack.signal(signal.SIGTERM)
        assert stack.wait(60) == 0, stack.output()


def _squat(port: int, timeout: float = 0.4) -> socket.socket:
    """Hold 127.0.0.1:`port` (listening) so that a restarted nats-server cannot bind it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            return sock
        except OSError:
            if time.monotonic() > deadline:
                sock.close()
                raise
            threading.Event().wait(0.01)


def test_nats_server_that_cannot_come_back_stops_the_stack_with_status_1(tmp_path: Path) -> None:
    """nats-server killed and its port taken: after the default restarts the stack exits 1 saying why."""
    port, data = free_port(), tmp_path / "data"
    base = f"http://127.0.0.1:{port}"
    with OglogProcess(
        ["stack", "up", "--data-dir", str(data), "--port", str(port)], tmp_path / "up.log"
    ) as stack:
        stack.wait_healthy(base)
        nats_port = int(re.search(r"nats://(?:\[REDACTED\]@)?127\.0\.0\.1:(\d+)", stack.output()).group(1))  # type: ignore[union-attr]
        os.kill(_pid(data / "nats" / "nats-server.pid"), signal.SIGKILL)
        squatter = _squat(nats_port)
        try:
            assert stack.wait(75) == 1, stack.output()
        finally:
            squatter.close()
        output = stack.output()
        assert "oglog: error: nats-server keeps exiting" in output and "gave up after 6 restarts" in output
        assert "stopped" in output  # shut down in order, not crashed
