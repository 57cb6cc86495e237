"""`oglog stack up` as a real subprocess: the seed README's quick test, clean SIGTERM shutdown, and a
`kill -9` mid-stream followed by a restart on the same data dir and port, losing and duplicating nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
from oglogstream.stack.broker.natsd import NatsServer, free_port
from oglogstream.stack.config import STREAM_NAME

from .query_helpers import OglogProcess, get_json, post_json

pytestmark = pytest.mark.timeout(180)


def stack_up(data_dir: Path, port: int, log: Path) -> OglogProcess:
    return OglogProcess(
        ["stack", "up", "--data-dir", str(data_dir), "--port", str(port), "--shutdown-timeout", "20s"], log
    )


def wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


class Poster(threading.Thread):
    """Posts NDJSON batches of entries with unique ids until stopped or the server goes away; records which
    entries were accepted (202)."""

    def __init__(self, base: str, service: str, batch: int = 50) -> None:
        super().__init__(daemon=True)
        self.base, self.service, self.batch = base, service, batch
        self.accepted: list[str] = []
        self.sent = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            ids = [f"{self.service}-{self.sent + i}" for i in range(self.batch)]
            body = "\n".join(
                json.dumps({"id": i, "level": "info", "message": f"entry {i}", "service": self.service})
                for i in ids
            ).encode()
            self.sent += self.batch
            try:
                status = post_json(
                    f"{self.base}/logs", body, timeout=5, headers={"X-Oglog-Batch-Id": uuid.uuid4().hex}
                )
            except OSError:
                return  # server gone: what was not answered with 202 is not "accepted"
            if status == 202:
                self.accepted.extend(ids)


def stored_ids(base: str, service: str) -> list[str]:
    """Every stored id of `service`, by walking /api/logs with the cursor."""
    ids: list[str] = []
    url = f"{base}/api/logs?service={service}&limit=1000"
    while url:
        status, body, headers = get_json(url)
        assert status == 200, body
        ids += [e["id"] for e in body]
        cursor = headers.get("X-Next-Cursor")
        url = f"{base}/api/logs?service={service}&limit=1000&cursor={cursor}" if cursor else ""
    return ids


def wait_stored(base: str, service: str, expected: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body, _ = get_json(f"{base}/api/stats?service={service}")
        if status == 200 and body["total_logs"] >= expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"only {body} of {expected} stored")


def assert_exactly_once(base: str, service: str, accepted: list[str]) -> None:
    wait_stored(base, service, len(accepted))
    ids = stored_ids(base, service)
    assert len(ids) == len(set(ids)), "duplicates stored"
    missing = set(accepted) - set(ids)
    assert not missing, f"{len(missing)} accepted entries lost"


def test_quick_test_from_the_seed_readme(tmp_path: Path) -> None:
    """POST /log -> 202, then GET /api/logs and /api/stats show it; a second instance on the same data dir is
    refused; SIGTERM exits 0 and takes nats-server with it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with stack_up(tmp_path / "data", port, tmp_path / "up.log") as stack:
        stack.wait_healthy(base)
        output = stack.output()
        for url in (
            f"{base}/api/logs",
            f"{base}/api/stats",
            f"{base}/health",
            f"ws://127.0.0.1:{port}/ws/live",
        ):
            assert url in output
        entry = {"level": "info", "message": "Hello OgLogStream", "service": "test-app"}
        assert post_json(f"{base}/log", entry) == 202
        wait_stored(base, "test-app", 1)
        status, logs, _ = get_json(f"{base}/api/logs")
        assert status == 200
        assert [(e["level"], e["message"], e["service"]) for e in logs] == [
            ("info", "Hello OgLogStream", "test-app")
        ]
        status, stats, _ = get_json(f"{base}/api/stats")
        assert stats["total_logs"] == 1 and stats["logs_by_service"] == {"test-app": 1}

        second = OglogProcess(
            ["stack", "up", "--data-dir", str(tmp_path / "data"), "--port", str(free_port())],
            tmp_path / "second.log",
        )
        assert second.wait(60) == 1
        assert "in use by another oglog process" in second.output()

        nats_pid = int((tmp_path / "data" / "nats" / "nats-server.pid").read_text())
        stack.signal(signal.SIGTERM)
        assert stack.wait(60) == 0
        assert "stopped" in stack.output()
    assert wait_gone(nats_pid, 1.0)


async def _pending_in_stream(store: Path) -> int:
    import nats

    server = NatsServer(store).start()
    try:
        nc = await nats.connect(server.url)
        try:
            info = await nc.jetstream().stream_info(STREAM_NAME)
            return int(info.state.messages)
        finally:
            await nc.close()
    finally:
        server.stop()


def test_sigterm_mid_stream_drains_everything_accepted(tmp_path: Path) -> None:
    """SIGTERM while a client is posting: exit 0 with nothing left unacked in JetStream (all in storage), and
    after a restart every accepted entry is there exactly once."""
    port, data = free_port(), tmp_path / "data"
    base = f"http://127.0.0.1:{port}"
    with stack_up(data, port, tmp_path / "up.log") as stack:
        stack.wait_healthy(base)
        poster = Poster(base, "term")
        poster.start()
        time.sleep(1.0)
        stack.signal(signal.SIGTERM)
        poster.join(30)
        assert stack.wait(60) == 0, stack.output()
    assert len(poster.accepted) >= 100
    assert asyncio.run(_pending_in_stream(data / "nats")) == 0
    with stack_up(data, port, tmp_path / "up2.log") as stack:
        stack.wait_healthy(base)
        assert_exactly_once(base, "term", poster.accepted)


def test_kill_9_mid_stream_then_restart_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """`kill -9` of the supervisor while a client posts: nats-server goes too, the same data dir and port
    start again at once, and every entry that got a 202 is stored exactly once."""
    port, data = free_port(), tmp_path / "data"
    base = f"http://127.0.0.1:{port}"
    stack = stack_up(data, port, tmp_path / "up.log")
    try:
        stack.wait_healthy(base)
        nats_pid = int((data / "nats" / "nats-server.pid").read_text())
        poster = Poster(base, "crash")
        poster.start()
        time.sleep(1.0)
        os.kill(stack.proc.pid, signal.SIGKILL)
        poster.join(30)
    finally:
        stack.kill()
    assert len(poster.accepted) >= 100
    assert wait_gone(nats_pid), "nats-server outlived its supervisor"
    with stack_up(data, port, tmp_path / "up2.log") as again:
        again.wait_healthy(base)
        assert_exactly_once(base, "crash", poster.accepted)
        again.signal(signal.SIGTERM)
        assert again.wait(60) == 0
