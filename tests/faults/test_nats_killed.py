"""nats-server SIGKILLed mid-stream under `oglog stack up` (defaults): the supervisor restarts it, ingestion
recovers by itself, and every acknowledged entry is stored exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from oglogstream.stack.natsd import free_port

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
        assert "nats-server exited" in stack.output() and "nats-server restarted" in stack.output()
        assert_exactly_once(base, "natskill", accepted)
        stack.signal(signal.SIGTERM)
        assert stack.wait(60) == 0, stack.output()
