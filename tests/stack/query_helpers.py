"""Helpers for the query, live-tail, app and `oglog` tests: an app with a handle on its storage, rows, and an
`oglog` subprocess."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from oglogstream.stack.config import StackConfig
from oglogstream.stack.http.app import create_app
from oglogstream.stack.http.resources import STORAGE
from oglogstream.stack.query.live import LIVE

from tests.stack.helpers import running_app, wait_for

__all__ = [
    "OglogProcess",
    "get_json",
    "ingest_and_query",
    "insert_rows",
    "live_clients",
    "make_row",
    "post_json",
    "running",
    "utc",
]

ROW_COLUMNS = ("timestamp", "received_at", "id", "service", "level", "message", "attributes")


def utc(**delta: float) -> dt.datetime:
    """Now (naive UTC, as ClickHouse takes DateTime64 'UTC') minus `delta` (timedelta keywords)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(**delta)


def make_row(
    row_id: str,
    ts: dt.datetime,
    *,
    level: str = "info",
    service: str = "svc",
    message: str = "hello",
    attributes: Mapping[str, str] | None = None,
) -> list[Any]:
    """One `logs` row in ROW_COLUMNS order."""
    return [ts, ts, row_id, service, level, message, dict(attributes or {})]


async def insert_rows(app: web.Application, rows: Sequence[Sequence[Any]]) -> None:
    """Insert rows straight into the app's storage (bypassing ingestion) through `Storage.run`."""
    data = [list(row) for row in rows]
    await app[STORAGE].run(lambda client: client.insert("logs", data, column_names=list(ROW_COLUMNS)))


@contextlib.asynccontextmanager
async def running(config: StackConfig) -> AsyncIterator[tuple[str, web.Application]]:
    """`create_app(config)` on a free port: yields (base URL, app); shuts down gracefully on exit."""
    app = create_app(config)
    async with running_app(config, app=app) as url:
        yield url, app


@contextlib.asynccontextmanager
async def ingest_and_query(
    nats_url: str, chdb_dsn: str
) -> AsyncIterator[tuple[str, web.Application, aiohttp.ClientSession]]:
    """Ingest + query roles (defaults) on `nats_url` and `chdb_dsn`: yields (base URL, app, a client
    session), the live tail's test app."""
    config = StackConfig(roles=("ingest", "query"), nats_url=nats_url, clickhouse_dsn=chdb_dsn)
    async with running(config) as (base, app), aiohttp.ClientSession() as session:
        yield base, app, session


async def live_clients(app: web.Application, n: int, *, senders: bool = False) -> None:
    """Wait (up to 10 s, else AssertionError) until the app's live hub has its NATS subscription and `n`
    clients; with `senders`, until each client's sender task has started too."""
    hub = app[LIVE]

    async def ready() -> bool:
        if hub.feed.subscription is None or len(hub.clients) != n:
            return False
        return not senders or all(c.sender for c in hub.clients)

    await wait_for(ready, timeout=10.0, interval=0.02)


def get_json(url: str, *, timeout: float = 10.0) -> tuple[int, Any, Mapping[str, str]]:
    """Blocking GET: (status, parsed JSON body, headers); non-2xx answers are returned, not raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), exc.headers


def post_json(url: str, body: Any, *, timeout: float = 10.0, headers: Mapping[str, str] | None = None) -> int:
    """Blocking POST of a JSON body (or NDJSON when `body` is bytes): the status code."""
    if isinstance(body, bytes):
        data, content_type = body, "application/x-ndjson"
    else:
        data, content_type = json.dumps(body).encode(), "application/json"
    all_headers = {"Content-Type": content_type, **(headers or {})}
    request = urllib.request.Request(url, data=data, method="POST", headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


class OglogProcess:
    """An `oglog ...` subprocess whose output goes to a file (read it with `.output()`)."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        new_session: bool = False,
    ) -> None:
        """`new_session`: run it as its own process group (signal the group like a terminal's Ctrl-C)."""
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oglogstream.stack.server.cli", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            start_new_session=new_session,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, base: str, timeout: float = 60.0) -> None:
        """Until GET /health answers 200; fails early if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"oglog exited with {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(OSError, ValueError):
                status, _, _ = get_json(f"{base}/health", timeout=2)
                if status == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"oglog not healthy within {timeout}s:\n{self.output()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL (the crash case) and reap."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.wait()

    def __enter__(self) -> OglogProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.wait()
