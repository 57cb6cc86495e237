"""Fixtures shared by every test group: dependencies are started by the tests themselves."""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from oglogstream import clear_context

IN_CI = os.environ.get("CI", "").lower() == "true"

#: Under pytest-xdist each worker takes its "free" ports from its own block below the kernel's ephemeral range
#: (32768-60999 by default): two workers never pick the same port between choosing and binding it, and a port
#: a test releases (to restart a server on it) is not handed out again for PORTS_PER_WORKER allocations.
PORT_BASE = 20000
PORTS_PER_WORKER = 1500

#: Tests `make test` runs after the parallel part, one at a time, as node-id prefix -> why: each measures
#: the machine itself, so tests beside it would make it flaky, or its report is too large for xdist to carry.
SERIAL: dict[str, str] = {
    "tests/sdk/test_sdk_review_memory.py::": "allocates ~3 GB; its report exceeds xdist's 2 GB frame",
    "tests/sdk/test_sdk_gaps5_gevent_exit.py::": "gunicorn's SIGTERM-to-exit deadline bound (3 s)",
    "tests/stack/test_http_boundary.py::test_gzip_bomb_is_refused_without_stalling": "/health < 1 s bound",
    "tests/stack/test_http_boundary.py::test_large_requests_do_not_stall": "/health < 1 s bound",
    "tests/sdk/test_sdk_review_attack.py::test_sigterm_right_after_a_burst": "default shutdown deadline",
    "tests/stack/test_gaps5_otlp_json.py::test_a_30_mb_string_does_not": "/health latency bound (1 s)",
    "tests/stack/test_gaps_otlp_json.py::test_nested_containers_are_refused": "/health latency bound",
    "tests/sdk/test_sdk_shutdown.py::test_logging_shutdown_against_a_hanging": "shutdown deadline",
    "tests/sdk/test_sdk_review_transport.py::test_handler_retries_after_a_trickled": "default read timeout",
    "tests/stack/test_dashboard_browser.py::test_live_tail_shows_server_drops": "browser reconnect timing",
    "tests/sdk/test_sdk_spool.py::test_spool_bounds_drop_the_oldest": "which batch the bound drops: timing",
    "tests/sdk/test_sdk_pace.py::test_flush_during_a_tight_logging_loop": "caller vs worker thread pace",
    "tests/sdk/test_sdk_review_lifecycle.py::test_a_signal_handler_using": "signal timing",
    "tests/sdk/test_sdk_shutdown.py::test_exit_with_a_hanging_server_stays": "exit budget + 0.5 s bound",
    "tests/cli/test_hostile_servers.py::TestOddAnswers::": "every command within a 40 s deadline",
}


def _use_worker_port_blocks() -> None:
    """Replace `natsd.free_port` (what tests and in-process NatsServers call) by a per-worker allocator;
    nothing changes outside xdist. Test modules import the patched name: the root conftest loads first."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    if not worker.startswith("gw"):
        return
    from oglogstream.stack.broker import natsd

    start = PORT_BASE + int(worker[2:]) * PORTS_PER_WORKER
    offsets = itertools.count()

    def free_port(host: str = "127.0.0.1") -> int:
        """A TCP port of this worker's block that is free right now on `host`; OSError if none is."""
        for _ in range(PORTS_PER_WORKER):
            port = start + next(offsets) % PORTS_PER_WORKER
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((host, port))
                except OSError:
                    continue
            return port
        raise OSError(f"no free port in {start}-{start + PORTS_PER_WORKER - 1} on {host}")

    natsd.free_port = free_port


_use_worker_port_blocks()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the SERIAL tests `serial` before `-m` deselects: `-m "not serial"` and `-m serial` split them.
    A test using a module- or class-scoped fixture joins its file's xdist group (`--dist loadgroup` keeps a
    group on one worker), so that fixture starts once and its tests keep their order; the rest spread out."""
    for item in items:
        if item.nodeid.startswith(tuple(SERIAL)):
            item.add_marker(pytest.mark.serial)
        definitions = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        if any(defs and defs[-1].scope in ("module", "class") for defs in definitions.values()):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


def require(module: str) -> None:
    """Skip when an optional dependency is missing locally; fail in CI, where everything must be installed."""
    try:
        __import__(module)
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"CI=true and dependency {module!r} is missing: {exc}")
        pytest.skip(f"{module} not installed")


@pytest.fixture(autouse=True)
def _no_bound_context_afterwards() -> Iterator[None]:
    """Fields a test binds with `oglogstream.bind` (the main thread's context) do not reach the next test
    that runs in the same process, whatever order pytest-xdist gives them."""
    yield
    clear_context()


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[object]:
    """A fresh nats-server with JetStream on a free port, its store in a temp dir."""
    require("nats")
    from oglogstream.stack.broker.natsd import NatsServer

    server = NatsServer(tmp_path / "nats").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def chdb_dsn(tmp_path: Path) -> str:
    """A clickhouse-connect DSN for an embedded chDB store in a temp dir."""
    require("chdb")
    return f"chdb://{tmp_path / 'clickhouse'}"


@pytest.fixture
def server() -> Iterator[object]:
    """A real local HTTP capture server (tests/sdk/capture_server.py), stopped after the test."""
    from tests.sdk.capture_server import CaptureServer

    srv = CaptureServer().start()
    try:
        yield srv
    finally:
        srv.stop()
