"""Everyone uses the keys: `oglog keys` prints a key once as the last stdout line and lists/revokes without
secrets; `oglog stack up` refuses a non-loopback address without keys and runs with `--require-auth`; the
SDK's asyncio client and the OpenTelemetry exporter (`headers=`) deliver with a key."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import urllib.request
import uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from oglogstream.stack.auth.middleware import WS_KEY_PROTOCOL, WS_PROTOCOL
from oglogstream.stack.broker.natsd import free_port
from oglogstream.stack.server.workers import default_ingest_workers

from ..conftest import IN_CI
from .auth_helpers import AuthStack, auth_stack
from .helpers import count_rows, wait_for
from .query_helpers import OglogProcess, get_json, post_json

pytestmark = pytest.mark.timeout(120)


def oglog(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oglogstream.stack.server.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    """create prints the key as the last line (only its hash is stored, mode 0600); list shows names and
    scopes, never the key; revoke marks it; bad scopes and duplicate names exit 2 with one line."""
    data = str(tmp_path / "data")
    created = oglog("keys", "create", "--data-dir", data, "--scope", "ingest", "--name", "web")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("ogl_") and len(key) > 40
    stored = (tmp_path / "data" / "keys.json").read_text()
    assert key not in stored and (tmp_path / "data" / "keys.json").stat().st_mode & 0o077 == 0
    listed = oglog("keys", "list", "--data-dir", data)
    assert "web" in listed.stdout and "ingest" in listed.stdout and key not in listed.stdout
    assert "active" in listed.stdout
    revoked = oglog("keys", "revoke", "web", "--data-dir", data)
    assert revoked.returncode == 0 and "revoked" in oglog("keys", "list", "--data-dir", data).stdout
    bad = oglog("keys", "create", "--data-dir", data, "--scope", "root")
    assert bad.returncode == 2 and "scope" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    oglog("keys", "create", "--data-dir", data, "--scope", "query", "--name", "dup")
    dup = oglog("keys", "create", "--data-dir", data, "--scope", "query", "--name", "dup")
    assert dup.returncode == 2 and "exists" in dup.stderr


def test_stack_up_beyond_loopback_needs_a_key_or_insecure(tmp_path: Path) -> None:
    """--host 0.0.0.0 without a key: exit 2, one line naming `oglog keys create` and --insecure."""
    refused = oglog(
        "stack", "up", "--host", "0.0.0.0", "--port", str(free_port()), "--data-dir", str(tmp_path)
    )
    assert refused.returncode == 2
    assert "oglog keys create" in refused.stderr and "--insecure" in refused.stderr


def test_stack_up_with_require_auth(tmp_path: Path) -> None:
    """`oglog stack up --require-auth` (log level debug, default ingest workers): the banner says auth is on,
    /health is open, the API and the live tail want the key and take it (the tail as a browser sends it), and
    the key never reaches the server's output."""
    data = tmp_path / "data"
    key = oglog("keys", "create", "--data-dir", str(data), "--scope", "query").stdout.strip().splitlines()[-1]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [
        "stack",
        "up",
        "--require-auth",
        "--data-dir",
        str(data),
        "--port",
        str(port),
        "--log-level",
        "debug",
    ]
    with OglogProcess(args, tmp_path / "stack.log") as proc:
        proc.wait_healthy(base)
        assert get_json(f"{base}/api/stats")[0] == 401
        request = urllib.request.Request(f"{base}/api/stats", headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
        asyncio.run(_live_tail_with_subprotocol(base, key))
        entry = {"level": "info", "message": "no key", "service": "auth-stack-up"}
        assert post_json(f"{base}/log", entry) == 401  # answered by an ingest worker
        assert post_json(f"{base}/log", entry, headers={"X-API-Key": key}) == 403
        wrong = urllib.request.Request(f"{base}/api/stats?token={key}", headers={"X-API-Key": key + "x"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(wrong, timeout=10)
    output = proc.output()
    assert "auth       on" in output
    if default_ingest_workers() > 1:
        assert "worker processes" in output  # the relay path was the one tested
    assert key not in output


async def _live_tail_with_subprotocol(base: str, key: str) -> None:
    """The browser's way through the default stack (ingest workers relay /ws/live to the supervisor): the
    key as a subprotocol, oglog.v1 selected back."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(
            f"{base}/ws/live", protocols=(WS_PROTOCOL, WS_KEY_PROTOCOL + key)
        ) as ws:
            assert ws.protocol == WS_PROTOCOL
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"{base}/ws/live", protocols=(WS_PROTOCOL, WS_KEY_PROTOCOL + "nope" * 8))
        assert refused.value.status == 401


@pytest.fixture
async def stack(nats_server: Any, chdb_dsn: str, tmp_path: Path) -> AsyncIterator[AuthStack]:
    async with auth_stack(nats_server.url, chdb_dsn, tmp_path) as running_stack:
        yield running_stack


async def test_asyncio_client_sends_its_key(stack: AuthStack) -> None:
    """AsyncOgLogClient(api_key=...) delivers every record."""
    import oglogstream

    service = f"async-{uuid.uuid4().hex[:8]}"
    async with oglogstream.AsyncOgLogClient(stack.base, service, api_key=stack.keys["ingest"]) as client:
        for i in range(10):
            client.info(f"async {i}")
        assert await client.flush(10)
    await wait_for(lambda: _rows(stack, service, 10), timeout=30)


async def _rows(stack: AuthStack, service: str, expected: int) -> bool:
    return await count_rows(stack.app, f"service = '{service}'") >= expected


async def test_opentelemetry_exporter_with_headers(stack: AuthStack) -> None:
    """OTLPLogExporter(headers={"Authorization": "Bearer KEY"}) -> /v1/logs: records stored; the same
    exporter without headers gets 401 and stores nothing."""
    try:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
        from opentelemetry.sdk.resources import Resource
    except ImportError:
        if IN_CI:
            raise
        pytest.skip("opentelemetry exporter not installed")

    async def export(service: str, headers: dict[str, str] | None) -> None:
        exporter = OTLPLogExporter(endpoint=f"{stack.base}/v1/logs", timeout=10, headers=headers)
        provider = LoggerProvider(resource=Resource.create({"service.name": service}))
        provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            handler = LoggingHandler(level=logging.INFO, logger_provider=provider)
        logger = logging.getLogger(f"app.otel.auth.{service}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        try:
            await asyncio.to_thread(logger.info, "through otel")
        finally:
            logger.removeHandler(handler)
            await asyncio.to_thread(provider.shutdown)

    good, bad = f"otel-key-{uuid.uuid4().hex[:6]}", f"otel-nokey-{uuid.uuid4().hex[:6]}"
    await export(good, {"Authorization": f"Bearer {stack.keys['ingest']}"})
    await export(bad, None)
    await wait_for(lambda: _rows(stack, good, 1), timeout=30)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{stack.base}/api/stats", params={"service": bad}, headers=stack.headers("query")
        ) as resp,
    ):
        assert json.loads(await resp.read())["total_logs"] == 0


async def test_dead_letters_cli_sends_oglog_api_key(stack: AuthStack) -> None:
    """`oglog dead-letters` takes its key from OGLOG_API_KEY: list with a query key works, replay needs admin,
    no key is a one-line 401."""

    def dead_letters(*args: str, key: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "OGLOG_API_KEY"}
        if key is not None:
            env["OGLOG_API_KEY"] = key
        return subprocess.run(
            [
                *(sys.executable, "-m", "oglogstream.stack.server.cli"),
                *("dead-letters", *args, "--url", stack.base),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    listed = await asyncio.to_thread(dead_letters, "list", key=stack.keys["query"])
    assert listed.returncode == 0 and "0 dead letter(s)" in listed.stdout, listed.stderr
    refused = await asyncio.to_thread(dead_letters, "list", key=None)
    assert refused.returncode == 1 and "401" in refused.stderr
    forbidden = await asyncio.to_thread(dead_letters, "replay", "--all", key=stack.keys["query"])
    assert forbidden.returncode == 1 and "403" in forbidden.stderr
    replayed = await asyncio.to_thread(dead_letters, "replay", "--all", key=stack.keys["admin"])
    assert replayed.returncode == 0, replayed.stderr
