"""A worker stopped before it listens (its socket refuses or is missing while its process lives) is not
healthy: /health turns 503 once it is silent past WORKER_START_GRACE, and the pool's liveness check replaces
it. Before, such a worker counted as "gone, being restarted": /health said ok, and only the start timeout
(60 s; at the stack's own start, the stack's exit) ended it."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .query_helpers import OglogProcess, post_json
from .test_health_workers import ENTRY, health_until, two_worker_stack, worker_pids

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def started(nats_server: Any, tmp_path: Path) -> Iterator[tuple[str, OglogProcess]]:
    """`oglog stack up --ingest-workers 2`, fully started: its URL and process."""
    with two_worker_stack(nats_server, tmp_path) as started:
        yield started


def stop_next_worker(supervisor: int, known: list[int], timeout: float = 30.0) -> int:
    """SIGSTOP the first worker process not in `known` as soon as it appears (it has just exec'd: importing
    and connecting take it ~1 s before it could listen); its pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in worker_pids_quiet(supervisor):
            if pid not in known:
                os.kill(pid, signal.SIGSTOP)
                return pid
        threading.Event().wait(0.005)
    raise AssertionError(f"no new worker within {timeout} s")


def worker_pids_quiet(supervisor: int) -> list[int]:
    """worker_pids, tolerating a child that exits while it is read."""
    try:
        return worker_pids(supervisor)
    except OSError:
        return []


def test_a_worker_stopped_before_it_listens_makes_health_degraded_then_is_replaced(
    started: tuple[str, OglogProcess],
) -> None:
    """kill -9 one worker, SIGSTOP its replacement before it listens: /health is 503 naming a worker that does
    not answer (not 200 until the start timeout), the liveness check kills it, and a new one serves."""
    base, proc = started
    supervisor = proc.proc.pid
    workers = worker_pids(supervisor)
    assert len(workers) == 2, workers
    os.kill(workers[0], signal.SIGKILL)
    stopped = stop_next_worker(supervisor, workers)
    try:
        # Within 45 s: the grace (20 s) and a probe, well before the start timeout (60 s) would replace it.
        body = health_until(base, 503, timeout=45, request_timeout=4.0)
        assert f"restarted (pid {stopped})" not in proc.output(), "it listened before it was stopped"
        assert "no answer to /health" in body["jetstream_status"], body
        assert "refuses or is missing" in body["jetstream_status"], body
        deadline = time.monotonic() + 90
        while stopped in (now := worker_pids_quiet(supervisor)) or len(now) != 2:
            assert time.monotonic() < deadline, f"the stopped worker was not replaced: {stopped} -> {now}"
            threading.Event().wait(0.5)
        assert f"(pid {stopped}) missed its liveness check" in proc.output(), proc.output()
        assert health_until(base, 200, timeout=60, request_timeout=4.0)["status"] == "ok"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stopped, signal.SIGCONT)
    assert all(post_json(f"{base}/logs", [ENTRY]) == 202 for _ in range(10))
