"""Fixtures shared by every test group: dependencies are started by the tests themselves."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(module: str) -> None:
    """Skip when an optional dependency is missing locally; fail in CI, where everything must be installed."""
    try:
        __import__(module)
    except ImportError as exc:
        if IN_CI:
            pytest.fail(f"CI=true and dependency {module!r} is missing: {exc}")
        pytest.skip(f"{module} not installed")


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
