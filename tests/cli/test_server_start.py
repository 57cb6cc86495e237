"""What a new user hit starting the server (issue 15): the bound port in the banner, errors that name the
variable or flag, a role that cannot reach NATS saying so, and no storage announced by an ingest-only role."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from oglogstream.stack.broker.natsd import free_port
from oglogstream.stack.config import DEFAULT_SHUTDOWN_TIMEOUT
from oglogstream.stack.server import cli as stack_cli
from oglogstream.stack.server.stop_deadline import stop_deadline

from tests.stack.query_helpers import get_json

pytestmark = pytest.mark.timeout(90)

_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


def oglog(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oglogstream.cli", *args], capture_output=True, text=True,
                          timeout=30, env={**os.environ, **(env or {})})


class Server:
    """A long-running `oglog ...` whose stdout and stderr go to files; SIGTERM and reaped on exit."""

    def __init__(self, args: list[str], tmp: Path, env: dict[str, str] | None = None) -> None:
        self.out_path, self.err_path = tmp / "out.log", tmp / "err.log"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
            self.proc = subprocess.Popen([sys.executable, "-m", "oglogstream.cli", *args], stdout=out,
                                         stderr=err, env=environ)

    def wait_for(self, pattern: str, stream: str = "out", timeout: float = 45.0) -> re.Match[str]:
        path = self.out_path if stream == "out" else self.err_path
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, path.read_text(errors="replace"))
            if match:
                return match
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.err_path.read_text()}"
            time.sleep(0.1)
        raise AssertionError(f"{pattern!r} not seen in {timeout}s: {path.read_text()}")

    def stop(self) -> int:
        """SIGTERM; the exit status, within the documented stop deadline (TimeoutExpired past it)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(stop_deadline(DEFAULT_SHUTDOWN_TIMEOUT))


@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_0_banner_names_the_bound_port(tmp_path: Path, workers: str) -> None:
    """`stack up --port 0` (one process, or ingest workers) prints URLs with the port the kernel picked, and
    /health answers there."""
    server = Server(["stack", "up", "--port", "0", "--data-dir", str(tmp_path / "data"),
                     "--ingest-workers", workers], tmp_path)
    try:
        port = int(server.wait_for(_LISTENING.pattern).group(1))
        assert port != 0
        banner = server.out_path.read_text()
        assert ":0/" not in banner and f"ws://127.0.0.1:{port}/ws/live" in banner
        status, health, _ = get_json(f"http://127.0.0.1:{port}/health", timeout=5)
        assert status == 200 and health["status"] == "ok"
    finally:
        assert server.stop() == 0


def test_ingest_role_that_cannot_reach_nats_says_so(tmp_path: Path) -> None:
    """`serve ingest` against a NATS URL nobody answers: one stderr line naming the URL (credentials
    redacted), said once while it keeps retrying; the banner shows the bound port and no storage."""
    port = free_port()
    env = {"NATS_URL": f"nats://user:s3cret-pass@127.0.0.1:{port}", "HTTP_PORT": "0"}
    server = Server(["serve", "ingest"], tmp_path, env)
    try:
        server.wait_for(_LISTENING.pattern)
        server.wait_for(rf"cannot reach NATS at nats://\[REDACTED\]@127\.0\.0\.1:{port}", stream="err")
        time.sleep(1.5)  # several reconnect attempts (every 0.5 s) happen meanwhile
        banner = server.out_path.read_text()
    finally:
        server.stop()
    errors = server.err_path.read_text()
    assert errors.count("cannot reach NATS") == 1
    assert "s3cret-pass" not in errors + banner
    assert "storage" not in banner and "nats       nats://[REDACTED]@" in banner


def test_stream_replicas_beyond_the_cluster_names_the_variable(nats_server: Any, tmp_path: Path) -> None:
    """NATS_STREAM_REPLICAS=3 on a single nats-server: the refusal names the variable, and is said once."""
    env = {"NATS_URL": nats_server.url, "NATS_STREAM_REPLICAS": "3", "HTTP_PORT": "0"}
    server = Server(["serve", "ingest"], tmp_path, env)
    try:
        server.wait_for(r"NATS_STREAM_REPLICAS=3: JetStream needs at least that many servers", stream="err")
        time.sleep(1.5)
    finally:
        server.stop()
    assert server.err_path.read_text().count("NATS_STREAM_REPLICAS=3") == 1


def test_bad_replicas_value_is_a_config_error_naming_it() -> None:
    """NATS_STREAM_REPLICAS outside 1..5 or not a number: exit 2, one line naming the variable."""
    for value, reason in (("9", "JetStream allows 1..5 replicas, got 9"), ("x", "expected an integer")):
        result = oglog("serve", "ingest", env={"NATS_STREAM_REPLICAS": value})
        assert result.returncode == 2
        assert result.stderr.startswith(f"oglog: error: NATS_STREAM_REPLICAS: {reason}")


def test_serve_help_lists_every_variable_it_reads() -> None:
    """Every variable in the CLI's field -> variable table (and the CLICKHOUSE_URL alias) is in the help."""
    result = oglog("serve", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    names = {name for field, name in stack_cli._ENV_NAMES.items() if field != "roles"} | {"CLICKHOUSE_URL"}
    assert "NATS_STREAM_REPLICAS" in names
    for name in names:
        assert re.search(rf"\b{name}\b", text), name


@pytest.mark.parametrize("command", ["stack", "demo"])
def test_data_dir_that_is_a_file_is_not_a_directory(tmp_path: Path, command: str) -> None:
    """--data-dir naming a file (or a path under one): exit 2, one line saying "not a directory"."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    args = ["stack", "up"] if command == "stack" else ["demo"]
    for path in (afile, afile / "sub"):
        result = oglog(*args, "--data-dir", str(path), "--port", "0")
        assert result.returncode == 2
        assert result.stderr == f"oglog: error: --data-dir: {afile} is not a directory\n"
