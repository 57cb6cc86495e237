"""`oglog` command line: help texts, `oglog serve` refusing bad configuration with exit 2 and one line
naming the variable, and roles served by separate `oglog serve` processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from oglogstream.stack.broker.natsd import free_port
from oglogstream.stack.server import cli

from .query_helpers import OglogProcess, get_json, post_json

pytestmark = pytest.mark.timeout(60)


def run_oglog(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": "/usr/bin:/bin", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "oglogstream.stack.server.cli", *args],
        capture_output=True,
        text=True,
        env=clean,
        timeout=30,
    )


def test_help_texts_name_commands_and_flags() -> None:
    """`oglog --help` lists the commands; `oglog stack up --help` documents every flag with its default."""
    top = run_oglog("--help")
    assert top.returncode == 0
    for command in ("stack", "serve", "demo"):
        assert command in top.stdout
    up = run_oglog("stack", "up", "--help")
    assert up.returncode == 0
    for flag in ("--port", "--host", "--data-dir", "--nats-url", "--clickhouse-url", "--retention-days"):
        assert flag in up.stdout
    assert "8080" in up.stdout and "./oglog-data" in up.stdout


def test_serve_with_bad_env_exits_2_naming_the_variable() -> None:
    """A real `oglog serve` process with HTTP_PORT=abc prints one clear line and exits with status 2."""
    result = run_oglog("serve", "ingest", env={"HTTP_PORT": "abc"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["oglog: error: HTTP_PORT: expected an integer, got 'abc'"]


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"HTTP_PORT": "70000"}, "HTTP_PORT"),
        ({"BATCH_SIZE": "0"}, "BATCH_SIZE"),
        ({"BATCH_SIZE": "many"}, "BATCH_SIZE"),
        ({"FLUSH_TIMEOUT": "soon"}, "FLUSH_TIMEOUT"),
        ({"FLUSH_TIMEOUT": "0s"}, "FLUSH_TIMEOUT"),
        ({"MAX_RETRIES": "-1"}, "MAX_RETRIES"),
        ({"SHUTDOWN_TIMEOUT": "1y"}, "SHUTDOWN_TIMEOUT"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"RETENTION_DAYS": "0"}, "RETENTION_DAYS"),
        ({"NATS_STREAM_REPLICAS": "7"}, "NATS_STREAM_REPLICAS"),
        ({"NATS_STREAM_REPLICAS": "three"}, "NATS_STREAM_REPLICAS"),
        ({"NATS_URL": "localhost:4222"}, "NATS_URL"),
        ({"NATS_URL": "nats://host:99999"}, "NATS_URL"),
        ({"CLICKHOUSE_DSN": "mysql://db"}, "CLICKHOUSE_DSN"),
        ({"CLICKHOUSE_URL": "ftp://db"}, "CLICKHOUSE_URL"),
    ],
)
def test_every_bad_variable_is_named(
    env: dict[str, str], variable: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each invalid variable gives exit status 2 and a message starting with that variable's name."""
    for name in cli._ENV_NAMES.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CLICKHOUSE_URL", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["serve", "process", "query"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"oglog: error: {variable}:") and "\n" not in err


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--port", "99999"], "--port"),
        (["--retention-days", "0"], "--retention-days"),
        (["--nats-url", "nowhere"], "--nats-url"),
        (["--clickhouse-url", "mysql://x"], "--clickhouse-url"),
        (["--shutdown-timeout", "forever"], "--shutdown-timeout"),
    ],
)
def test_stack_up_bad_flags_exit_2_naming_the_flag(
    args: list[str], flag: str, capsys: pytest.CaptureFixture[str], tmp_path: object
) -> None:
    """Bad `oglog stack up` flags are refused before anything starts, naming the flag."""
    assert cli.main(["stack", "up", "--data-dir", str(tmp_path), *args]) == 2
    assert capsys.readouterr().err.strip().startswith(f"oglog: error: {flag}:")


def test_unknown_role_is_a_usage_error() -> None:
    """`oglog serve storage` is refused by the argument parser (exit 2) listing the valid roles."""
    result = run_oglog("serve", "storage")
    assert result.returncode == 2 and "ingest" in result.stderr


def test_serve_roles_split_across_processes(nats_server: Any, tmp_path: Path) -> None:
    """`oglog serve ingest` and `oglog serve process query` share one NATS: what one accepts, the other stores
    and serves; both stop cleanly on SIGTERM."""
    ingest_port, query_port = free_port(), free_port()
    common = {"NATS_URL": nats_server.url, "FLUSH_TIMEOUT": "200ms", "SHUTDOWN_TIMEOUT": "10s"}
    ingest = OglogProcess(
        ["serve", "ingest"], tmp_path / "ingest.log", env={**common, "HTTP_PORT": str(ingest_port)}
    )
    query_env = {**common, "HTTP_PORT": str(query_port), "CLICKHOUSE_DSN": f"chdb://{tmp_path / 'ch'}"}
    with ingest, OglogProcess(["serve", "process", "query"], tmp_path / "query.log", env=query_env) as query:
        ingest.wait_healthy(f"http://127.0.0.1:{ingest_port}")
        query.wait_healthy(f"http://127.0.0.1:{query_port}")
        entry = {"level": "error", "message": "split roles work", "service": "split"}
        assert post_json(f"http://127.0.0.1:{ingest_port}/log", entry) == 202
        deadline = time.monotonic() + 30
        logs: list[Any] = []
        while time.monotonic() < deadline and not logs:
            _, logs, _ = get_json(f"http://127.0.0.1:{query_port}/api/logs?service=split")
            time.sleep(0.1)
        assert [e["message"] for e in logs] == ["split roles work"]
        _, health, _ = get_json(f"http://127.0.0.1:{ingest_port}/health")
        assert health["service"] == "ingest" and "storage_status" not in health
        for proc in (ingest, query):
            proc.signal(signal.SIGTERM)
            assert proc.wait(30) == 0
