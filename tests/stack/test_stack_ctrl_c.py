"""Ctrl-C in a terminal signals the whole foreground process group. nats-server runs in its own session, so
SIGINT to the group of `oglog stack up` under load reaches only the supervisor, which stops nats-server last:
no NATS disconnect warning, nothing left unacked, and no duplicates skipped after a restart."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from oglogstream.stack.broker.natsd import free_port

from .query_helpers import OglogProcess, get_json
from .test_stack_up import Poster, _pending_in_stream, assert_exactly_once, stack_up

pytestmark = pytest.mark.timeout(180)

ARGS = ("stack", "up", "--shutdown-timeout", "20s")


def _duplicates_skipped(base: str) -> float:
    """Sum of oglog_duplicates_skipped_total over its stages, from GET /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("oglog_duplicates_skipped_total")
    )


def test_sigint_to_the_process_group_stops_nats_last(tmp_path: Path) -> None:
    """A client posts; SIGINT goes to every process of the group (as Ctrl-C does): exit 0, no disconnect
    warning, an empty logs stream, and after a restart every 202 stored once with no duplicate skipped."""
    port, data = free_port(), tmp_path / "data"
    base = f"http://127.0.0.1:{port}"
    args = [*ARGS, "--data-dir", str(data), "--port", str(port)]
    with OglogProcess(args, tmp_path / "up.log", new_session=True) as stack:
        stack.wait_healthy(base)
        nats_pid = int((data / "nats" / "nats-server.pid").read_text())
        assert os.getpgid(nats_pid) != os.getpgid(stack.proc.pid)
        poster = Poster(base, "ctrlc")
        poster.start()
        time.sleep(1.0)
        os.killpg(stack.proc.pid, signal.SIGINT)
        poster.join(30)
        assert stack.wait(60) == 0, stack.output()
    output = stack.output()
    assert "disconnected" not in output.lower(), output
    assert len(poster.accepted) >= 100
    assert asyncio.run(_pending_in_stream(data / "nats")) == 0
    with stack_up(data, port, tmp_path / "up2.log") as again:
        again.wait_healthy(base)
        assert_exactly_once(base, "ctrlc", poster.accepted)
        assert _duplicates_skipped(base) == 0
        status, _, _ = get_json(f"{base}/health")
        assert status == 200
