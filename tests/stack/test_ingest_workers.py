"""`oglog stack up --ingest-workers N`: ingestion in N processes sharing the port (workers.py), every other
route relayed to the supervisor (worker_proxy.py); a killed worker is restarted and loses nothing that got a
202; shutdown drains every worker; 0 keeps the single process."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from oglogstream.stack.broker.natsd import NatsServer, free_port
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.app import create_app
from oglogstream.stack.server.worker_proxy import install
from oglogstream.stack.server.workers import WorkerPool, check_port_free, default_ingest_workers
from prometheus_client.parser import text_string_to_metric_families

from .helpers import relayed_supervisor
from .query_helpers import OglogProcess, get_json, post_json
from .test_stack_up import assert_exactly_once, wait_gone

pytestmark = pytest.mark.timeout(180)
_WORKER_MODULE = b"oglogstream.stack.server.workers"


def stack_up(data_dir: Path, port: int, log: Path, workers: int) -> OglogProcess:
    args = ["stack", "up", "--data-dir", str(data_dir), "--port", str(port), "--shutdown-timeout", "20s"]
    return OglogProcess([*args, "--ingest-workers", str(workers)], log)


def worker_pids(supervisor: int) -> set[int]:
    """Pids of the supervisor's children that run an ingest worker."""
    pids: set[int] = set()
    for task in Path(f"/proc/{supervisor}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in map(int, children):
            try:
                if _WORKER_MODULE in Path(f"/proc/{pid}/cmdline").read_bytes():
                    pids.add(pid)
            except OSError:
                pass
    return pids


def wait_workers(supervisor: int, count: int, *, not_in: frozenset[int] = frozenset()) -> set[int]:
    """Until exactly `count` workers not in `not_in` run (60 s at most); their pids."""
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        pids = worker_pids(supervisor) - not_in
        if len(pids) == count:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"expected {count} new workers, have {worker_pids(supervisor)}")


class RetryingPoster(threading.Thread):
    """Posts NDJSON batches over a fresh connection each (so they spread over the workers), retrying a batch
    with the same batch id after a connection error or 503 as the SDK does; records what got a 202."""

    def __init__(self, base: str, service: str, batch: int = 50) -> None:
        super().__init__(daemon=True)
        self.base, self.service, self.batch = base, service, batch
        self.accepted: list[str] = []
        self.retries = 0
        self.stop = threading.Event()

    def run(self) -> None:
        sent = 0
        while not self.stop.is_set():
            ids = [f"{self.service}-{sent + i}" for i in range(self.batch)]
            sent += self.batch
            body = "\n".join(
                json.dumps({"id": i, "level": "info", "message": f"entry {i}", "service": self.service})
                for i in ids
            ).encode()
            batch_id = uuid.uuid4().hex
            while True:
                try:
                    status = post_json(
                        f"{self.base}/logs", body, timeout=10, headers={"X-Oglog-Batch-Id": batch_id}
                    )
                except OSError:
                    status = 0
                if status == 202:
                    self.accepted.extend(ids)
                    break
                if self.stop.is_set():
                    return  # not acknowledged: not promised
                self.retries += 1
                self.stop.wait(0.05)


# -- relaying: every route works through a worker ---------------------------------------------------------
async def test_worker_relays_every_non_ingest_route_to_the_supervisor(tmp_path: Path) -> None:
    """An ingest-only app with the relay answers /health, /metrics, /api/*, the dashboard and /ws/live as the
    supervisor does (status and body, refusals included), while POST /log is served by the worker itself."""
    async with relayed_supervisor(tmp_path) as (base, _app, _nats), aiohttp.ClientSession() as session:
        async with session.get(f"{base}/health") as resp:
            health = await resp.json()
        assert resp.status == 200 and health["storage_status"] == "ok"
        assert health["service"] == "ingest+process+query"  # the supervisor answered
        async with session.ws_connect(f"{base}/ws/live?service=relay") as ws:
            await asyncio.sleep(0.3)
            entry = {"level": "warn", "message": "through a worker", "service": "relay"}
            async with session.post(f"{base}/log", json=entry) as resp:
                assert resp.status == 202
            msg = await asyncio.wait_for(ws.receive(), 10)
            assert json.loads(msg.data)["message"] == "through a worker"
        for _ in range(100):
            async with session.get(f"{base}/api/logs?service=relay") as resp:
                logs = await resp.json()
            if logs:
                break
            await asyncio.sleep(0.1)
        assert [e["message"] for e in logs] == ["through a worker"]
        async with session.get(f"{base}/api/logs?level=bogus") as resp:
            problem = await resp.json()
        assert resp.status == 400 and problem["field"] == "level"
        async with session.get(f"{base}/ws/live?level=bogus", headers=_upgrade()) as resp:
            assert resp.status == 400 and (await resp.json())["field"] == "level"
        async with session.get(f"{base}/") as resp:
            assert resp.status == 200 and "Content-Security-Policy" in resp.headers
        async with session.get(f"{base}/metrics") as resp:
            assert resp.status == 200 and "oglog_rows_inserted" in await resp.text()
        async with session.get(f"{base}/no-such-path") as resp:
            assert resp.status == 404


def _upgrade() -> dict[str, str]:
    return {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }


async def test_supervisor_unreachable_is_a_502_problem(tmp_path: Path) -> None:
    """A query on a worker whose supervisor socket is gone gets 502 with field and reason, not a hang."""
    with NatsServer(tmp_path / "nats") as nats:
        worker_app = create_app(StackConfig(roles=("ingest",), nats_url=nats.url))
        install(worker_app, tmp_path / "missing.sock")
        worker = web.AppRunner(worker_app, handle_signals=False, access_log=None, shutdown_timeout=5)
        await worker.setup()
        try:
            await web.TCPSite(worker, "127.0.0.1", 0).start()
            base = "http://{}:{}".format(*worker.addresses[0][:2])
            async with aiohttp.ClientSession() as session, session.get(f"{base}/api/stats") as resp:
                body = await resp.json()
            assert resp.status == 502 and body["field"] == "path" and body["reason"]
        finally:
            await worker.cleanup()


async def test_a_client_leaving_mid_answer_is_not_blamed_on_the_supervisor(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that closes its connection while a worker relays a long answer costs no ERROR line saying the
    supervisor is unreachable (the supervisor is fine; the review saw 13 such lines from browsing)."""

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(50):
            await response.write(b"x" * 65536)
            await asyncio.sleep(0.02)
        return response

    sup_app = web.Application()
    sup_app.router.add_get("/api/slow", slow)
    async with relayed_supervisor(tmp_path, sup_app) as (base, _app, _nats):
        host, port = base.removeprefix("http://").rsplit(":", 1)
        caplog.set_level(logging.DEBUG, logger="oglogstream.stack")
        for _ in range(3):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /api/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await reader.readexactly(1000)
            writer.transport.abort()  # gone mid-answer
        await asyncio.sleep(1.5)  # the relays notice on their next write
    blamed = [r for r in caplog.records if "supervisor unreachable" in r.getMessage()]
    assert not blamed
    assert any("client left" in r.getMessage() for r in caplog.records)


# -- options ----------------------------------------------------------------------------------------------
def test_default_is_the_cores_available_and_a_pool_needs_two() -> None:
    """The default follows the CPU affinity (1 on a one-core machine: the single process); a pool of 1 is an
    error naming the option."""
    assert default_ingest_workers() == max(1, min(len(os.sched_getaffinity(0)), 8))
    with pytest.raises(ValueError, match="ingest_workers"):
        WorkerPool(StackConfig(), Path("x.sock"), 1)


def test_bad_worker_count_and_busy_port_are_clear_errors(tmp_path: Path) -> None:
    """--ingest-workers -1 exits 2 naming the flag; a port something already listens on exits 1, even though
    the workers would bind it with SO_REUSEPORT."""
    bad = OglogProcess(
        ["stack", "up", "--data-dir", str(tmp_path / "d"), "--ingest-workers", "-1"], tmp_path / "bad.log"
    )
    assert bad.wait(60) == 2
    assert "--ingest-workers: must be >= 0" in bad.output()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(OSError):
            check_port_free("127.0.0.1", port)
        busy = stack_up(tmp_path / "d2", port, tmp_path / "busy.log", 2)
        assert busy.wait(60) == 1
        assert f"cannot listen on 127.0.0.1:{port}" in busy.output()


def assert_metrics_of_every_process(base: str) -> None:
    """GET /metrics, wherever it lands, has each process's series: ingestion counted in the workers (both
    took load), inserts in the supervisor."""
    for _ in range(3):  # fresh connections: different workers answer
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        counting = {
            sample.labels["process"]
            for family in text_string_to_metric_families(text)
            if family.name == "oglog_entries_accepted"
            for sample in family.samples
            if sample.name.endswith("_total") and sample.value > 0
        }
        assert {"ingest-0", "ingest-1"} <= counting, text
        assert 'oglog_rows_inserted_total{process="supervisor"}' in text


def _hold(port: int) -> socket.socket:
    """Listen on 127.0.0.1:`port` without SO_REUSEPORT: a worker cannot join it."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", port))
    holder.listen()
    return holder


async def test_a_worker_that_cannot_start_fails_the_start_and_leaves_nothing(tmp_path: Path) -> None:
    """A worker that cannot listen makes start() raise RuntimeError naming it, and no worker is left."""
    with NatsServer(tmp_path / "nats") as nats:
        port = free_port()
        pool = WorkerPool(StackConfig(nats_url=nats.url, http_port=port), tmp_path / "s.sock", 2)
        with _hold(port), pytest.raises(RuntimeError, match=r"ingest worker \d did not start"):
            await pool.start()
        assert pool.pids == []


async def test_workers_that_keep_failing_are_restarted_with_backoff_then_given_up(tmp_path: Path) -> None:
    """Killed workers come back (new pids); when their port is taken they fail every restart, and past
    max_restarts the pool's watch returns the reason, which stops the stack."""
    with NatsServer(tmp_path / "nats") as nats:
        port = free_port()
        config = StackConfig(nats_url=nats.url, http_port=port, shutdown_timeout=5)
        pool = WorkerPool(config, tmp_path / "s.sock", 2, backoff_base=0.05, backoff_max=0.2, max_restarts=2)
        await pool.start()
        stop = asyncio.Event()
        watching = asyncio.create_task(pool.watch(stop))
        try:
            first = set(pool.pids)
            for pid in first:
                os.kill(pid, signal.SIGKILL)
            for _ in range(600):  # restarted: two new listening workers
                if len(pool.pids) == 2 and not first & set(pool.pids) and pool.restarts == 2:
                    break
                await asyncio.sleep(0.05)
            assert pool.restarts == 2 and not first & set(pool.pids)
            again = set(pool.pids)
            for pid in again:
                os.kill(pid, signal.SIGKILL)
            while _port_busy(port):  # the dead workers' sockets close with them
                await asyncio.sleep(0.01)
            with _hold(port):
                reason = await asyncio.wait_for(watching, 120)
            assert reason is not None and "kept failing" in reason
        finally:
            stop.set()
            await pool.stop()
            watching.cancel()


def _port_busy(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


# -- crash, restart, shutdown -----------------------------------------------------------------------------
def test_kill_9_of_a_worker_under_load_loses_nothing_and_it_is_restarted(tmp_path: Path) -> None:
    """`kill -9` of one ingest worker while clients post: the worker is replaced, queries keep working, and
    every entry that got a 202 is stored exactly once (retries reuse the batch id)."""
    port, data = free_port(), tmp_path / "data"
    base = f"http://127.0.0.1:{port}"
    with stack_up(data, port, tmp_path / "up.log", 2) as stack:
        stack.wait_healthy(base)
        first = wait_workers(stack.proc.pid, 2)
        posters = [RetryingPoster(base, f"kill{k}") for k in range(2)]
        for poster in posters:
            poster.start()
        time.sleep(1.5)
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        assert wait_gone(victim)
        replaced = wait_workers(stack.proc.pid, 1, not_in=frozenset(first))
        deadline = time.monotonic() + 60
        while "restarted (pid" not in stack.output() and time.monotonic() < deadline:
            time.sleep(0.1)  # the new worker listens once the supervisor logs the restart
        time.sleep(1.5)  # load reaches the new worker too
        for poster in posters:
            poster.stop.set()
            poster.join(30)
        assert f"(pid {victim}) is down (killed by SIGKILL)" in stack.output()
        assert worker_pids(stack.proc.pid) == (first - {victim}) | replaced
        for poster in posters:
            assert len(poster.accepted) >= 100
            assert_exactly_once(base, poster.service, poster.accepted)
        status, _, _ = get_json(f"{base}/health")
        assert status == 200
        assert_metrics_of_every_process(base)
        stack.signal(signal.SIGTERM)
        assert stack.wait(60) == 0, stack.output()


def test_sigterm_under_load_drains_every_worker(tmp_path: Path) -> None:
    """SIGTERM while clients post through two workers: exit 0, every worker gone, and after a restart (which
    stores whatever the processor had not fetched yet) every accepted entry is there exactly once."""
    port, data = free_port(), tmp_path / "data"
    base = f"http://127.0.0.1:{port}"
    with stack_up(data, port, tmp_path / "up.log", 2) as stack:
        stack.wait_healthy(base)
        workers = wait_workers(stack.proc.pid, 2)
        poster = RetryingPoster(base, "drain")
        poster.start()
        time.sleep(1.5)
        stack.signal(signal.SIGTERM)
        assert stack.wait(60) == 0, stack.output()
        poster.stop.set()
        poster.join(30)
    assert all(wait_gone(pid, 1.0) for pid in workers)
    assert len(poster.accepted) >= 100
    with stack_up(data, port, tmp_path / "up2.log", 0) as stack:
        stack.wait_healthy(base)
        assert_exactly_once(base, "drain", poster.accepted)
        assert worker_pids(stack.proc.pid) == set()  # 0: the single-process stack
        assert "worker processes" not in stack.output()
