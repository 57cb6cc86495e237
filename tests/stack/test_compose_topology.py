"""The production topology as local processes: one nats-server, 2 x `oglog serve ingest`, 1 x `oglog serve
process query` (chDB) and HAProxy running compose/haproxy/haproxy.cfg, with only its `server-template` lines
rewritten to the processes' 127.0.0.1 ports (routing, checks, retries and timeouts are the production ones).
Through HAProxy: the seed's quick test, an SDK batch with exact counts, the live tail, the dashboard, the
statistics page, its limits, and killing an ingest process without a failed request.

`haproxy -c` on the unmodified file is here too. No HAProxy: skipped locally, a failure when CI=true."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import dataclasses
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from oglogstream.stack.broker.natsd import NatsServer, free_port

from tests.conftest import IN_CI, require

from .query_helpers import OglogProcess

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
HAPROXY_CFG = ROOT / "compose" / "haproxy" / "haproxy.cfg"
HEALTHCHECK = ROOT / "compose" / "healthcheck.py"
#: Health-check period for the test (production: 2s); `fall 2` takes a dead server out within ~0.5 s.
CHECK_INTER = "250ms"
START_TIMEOUT = 60.0


def haproxy_binary() -> str:
    """Path to haproxy (Debian installs it in /usr/sbin, which a non-root PATH may lack)."""
    found = shutil.which("haproxy") or next(
        (path for path in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy") if os.access(path, os.X_OK)), None
    )
    if found is None:
        message = "haproxy is not installed (`make test` installs Debian's package)"
        if IN_CI:
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)
    return found


def generate_haproxy_config(source: str, servers: Mapping[str, Sequence[int]]) -> str:
    """`source` with each backend's `server-template` line replaced by one `server NAME-i 127.0.0.1:PORT` line
    per port in `servers[backend]` (named as the template names them). Every other line is kept."""
    out: list[str] = []
    section: tuple[str, str] = ("", "")
    replaced: list[str] = []
    for line in source.splitlines():
        header = re.match(r"^(global|defaults|frontend|backend|listen|resolvers|peers)\b\s*(\S*)", line)
        if header:
            section = (header.group(1), header.group(2))
        template = re.match(r"^(\s*)server-template\s+(\S+)\s", line)
        if template:
            kind, name = section
            assert kind == "backend" and name in servers, f"server-template outside a known backend: {line}"
            indent, prefix = template.groups()
            out.extend(
                f"{indent}server {prefix}{i} 127.0.0.1:{port}" for i, port in enumerate(servers[name], 1)
            )
            replaced.append(name)
            continue
        out.append(line)
    assert sorted(replaced) == sorted(servers), f"backends with a server-template: {replaced}"
    return "\n".join(out) + "\n"


def http(
    method: str, url: str, body: Any = None, *, headers: Mapping[str, str] | None = None, timeout: float = 10
) -> tuple[int, Any, Mapping[str, str]]:
    """(status, JSON or text body, headers); non-2xx answers are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})} if data is not None else {}
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw, response_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        status, raw, response_headers = exc.code, exc.read(), exc.headers
    text = raw.decode(errors="replace")
    if "json" in (response_headers.get("Content-Type") or ""):
        return status, json.loads(text), response_headers
    return status, text, response_headers


def poll(probe: Any, *, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Call `probe()` until it returns something truthy (returned); AssertionError past `timeout`."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")


class HAProxy:
    """A haproxy child process (foreground, `-db`) on a generated config; its log goes to a file."""

    def __init__(self, config: str, workdir: Path, env: Mapping[str, str]) -> None:
        self.config_path = workdir / "haproxy.cfg"
        self.config_path.write_text(config)
        self.log_path = workdir / "haproxy.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [haproxy_binary(), "-db", "-f", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM (HAProxy's immediate stop), SIGKILL past 10 s; safe to call twice."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@dataclasses.dataclass
class Topology:
    url: str  # HAProxy's frontend
    stats_url: str  # HAProxy's statistics listener
    ingest: list[OglogProcess]
    ingest_ports: list[int]
    query: OglogProcess
    query_port: int
    haproxy: HAProxy
    workdir: Path

    def server_states(self) -> dict[str, str]:
        """'backend/server' -> status ('UP', 'DOWN', ...) from the statistics page's CSV export."""
        status, text, _ = http("GET", f"{self.stats_url}/stats;csv")
        assert status == 200, text
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {
            f"{row['pxname']}/{row['svname']}": row["status"]
            for row in rows
            if row["svname"] not in ("FRONTEND", "BACKEND")
        }


def start_haproxy(
    workdir: Path, servers: Mapping[str, Sequence[int]], **env: str
) -> tuple[HAProxy, str, str]:
    """HAProxy on the generated config and free ports; returns it with its frontend and stats URLs once
    every backend server is UP."""
    workdir.mkdir(parents=True, exist_ok=True)
    http_port, stats_port = free_port(), free_port()
    config = generate_haproxy_config(HAPROXY_CFG.read_text(), servers)
    haproxy = HAProxy(
        config,
        workdir,
        {
            "OGLOG_HTTP_BIND": f"127.0.0.1:{http_port}",
            "OGLOG_STATS_BIND": f"127.0.0.1:{stats_port}",
            "OGLOG_CHECK_INTER": CHECK_INTER,
            **env,
        },
    )
    url, stats_url = f"http://127.0.0.1:{http_port}", f"http://127.0.0.1:{stats_port}"
    expected = {
        f"{backend}/{backend}-{i}" for backend, ports in servers.items() for i in range(1, len(ports) + 1)
    }

    def all_up() -> bool:
        if haproxy.proc.poll() is not None:
            raise AssertionError(f"haproxy exited with {haproxy.proc.returncode}:\n{haproxy.output()}")
        with contextlib.suppress(OSError):
            status, text, _ = http("GET", f"{stats_url}/stats;csv", timeout=2)
            rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
            up = {f"{r['pxname']}/{r['svname']}" for r in rows if r["status"] == "UP"}
            return status == 200 and expected <= up
        return False

    try:
        poll(all_up, timeout=START_TIMEOUT)
    except BaseException:
        haproxy.stop()
        raise
    return haproxy, url, stats_url


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """nats-server, 2 ingest processes, 1 process+query process (chDB) and HAProxy in front, for the module.

    Module-scoped because starting it costs seconds; tests that change it (the failover test) leave it
    usable by the others (one ingest instance is enough)."""
    require("nats")
    require("chdb")
    haproxy_binary()
    workdir = tmp_path_factory.mktemp("topology")
    with contextlib.ExitStack() as stack:
        nats = NatsServer(workdir / "nats").start()
        stack.callback(nats.stop)
        common = {
            "NATS_URL": nats.url,
            "FLUSH_TIMEOUT": "100ms",
            "SHUTDOWN_TIMEOUT": "5s",
            "LOG_LEVEL": "warn",
        }
        ingest_ports = [free_port(), free_port()]
        ingest = [
            stack.enter_context(
                OglogProcess(
                    ["serve", "ingest"], workdir / f"ingest-{i}.log", env={**common, "HTTP_PORT": str(port)}
                )
            )
            for i, port in enumerate(ingest_ports, 1)
        ]
        query_port = free_port()
        query_env = {**common, "HTTP_PORT": str(query_port), "CLICKHOUSE_DSN": f"chdb://{workdir / 'ch'}"}
        query = stack.enter_context(
            OglogProcess(["serve", "process", "query"], workdir / "query.log", env=query_env)
        )
        for proc, port in [*zip(ingest, ingest_ports, strict=True), (query, query_port)]:
            proc.wait_healthy(f"http://127.0.0.1:{port}", timeout=START_TIMEOUT)
        haproxy, url, stats_url = start_haproxy(
            workdir / "haproxy", {"ingest": ingest_ports, "query": [query_port]}
        )
        stack.callback(haproxy.stop)
        yield Topology(url, stats_url, ingest, ingest_ports, query, query_port, haproxy, workdir)


def unique_service(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def stored_count(url: str, service: str) -> int:
    status, stats, _ = http("GET", f"{url}/api/stats?service={service}")
    assert status == 200, stats
    return int(stats["total_logs"])


def wait_stored(url: str, service: str, expected: int, *, timeout: float = 30.0) -> None:
    """Until /api/stats counts `expected` entries of `service`; then checks no more arrive."""
    poll(lambda: stored_count(url, service) >= expected, timeout=timeout)
    time.sleep(0.3)  # a duplicate would land with the next flush (FLUSH_TIMEOUT 100ms)
    assert stored_count(url, service) == expected


# -- static ---------------------------------------------------------------------------------------------
def test_haproxy_config_passes_haproxy_check() -> None:
    """`haproxy -c -f compose/haproxy/haproxy.cfg` accepts the production file as is: service names that do
    not resolve here are left for the runtime resolvers (init-addr last,libc,none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OGLOG_")}
    result = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, env=env, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr


def test_generated_config_only_replaces_server_lines(tmp_path: Path) -> None:
    """The test config differs from the production file only in the server lines, and passes `haproxy -c`."""
    source = HAPROXY_CFG.read_text()
    generated = generate_haproxy_config(source, {"ingest": [1111, 2222], "query": [3333]})
    kept = [line for line in source.splitlines() if not line.strip().startswith("server-template ")]
    assert [line for line in generated.splitlines() if not line.strip().startswith("server ")] == kept
    assert "server ingest-2 127.0.0.1:2222" in generated and "server query-1 127.0.0.1:3333" in generated
    path = tmp_path / "haproxy.cfg"
    path.write_text(generated)
    result = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- through HAProxy ------------------------------------------------------------------------------------
def test_seed_quick_test_through_haproxy(topology: Topology) -> None:
    """The seed README's quick test against the load balancer: POST /log is 202 accepted, and the entry
    comes back from GET /api/logs and GET /api/stats."""
    service = unique_service("quick")
    entry = {"level": "info", "message": "Hello OgLogStream", "service": service}
    status, body, _ = http("POST", f"{topology.url}/log", entry)
    assert status == 202 and body["status"] == "accepted" and body["timestamp"]

    def logs() -> list[dict[str, Any]]:
        status, found, _ = http("GET", f"{topology.url}/api/logs?service={service}")
        assert status == 200
        return found  # type: ignore[no-any-return]

    (stored,) = poll(logs)
    assert {k: stored[k] for k in ("level", "message", "service")} == entry
    status, stats, _ = http("GET", f"{topology.url}/api/stats")
    assert status == 200 and stats["total_logs"] >= 1 and stats["logs_by_service"][service] == 1
    assert set(stats["logs_by_level"]) == {"debug", "info", "warn", "error", "fatal"}


def test_sdk_batch_through_haproxy_is_stored_exactly(topology: Topology) -> None:
    """OgLogHandler pointed at HAProxy delivers a batch whose exact count and contents are queryable through
    HAProxy, with nothing dropped."""
    import oglogstream

    service = unique_service("sdk")
    total = 400
    handler = oglogstream.OgLogHandler(url=topology.url, service=service, flush_interval=0.05)
    logger = logging.getLogger(f"tests.compose.{service}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        for i in range(total):
            logger.log(logging.ERROR if i % 10 == 0 else logging.INFO, "sdk entry %d", i, extra={"n": i})
        assert handler.flush(timeout=20)
    finally:
        logger.removeHandler(handler)
        handler.close(timeout=10)
    stats = handler.stats()
    assert stats.sent == total and stats.dropped_total == 0, stats

    wait_stored(topology.url, service, total)
    status, logs, _ = http("GET", f"{topology.url}/api/logs?service={service}&limit=1000")
    assert status == 200
    assert sorted(e["message"] for e in logs) == sorted(f"sdk entry {i}" for i in range(total))
    assert len({e["id"] for e in logs}) == total
    status, stats_body, _ = http("GET", f"{topology.url}/api/stats?service={service}")
    assert stats_body["logs_by_level"]["error"] == total // 10


async def test_live_tail_websocket_through_haproxy(topology: Topology) -> None:
    """A WebSocket on /ws/live opened through HAProxy receives an entry posted through HAProxy."""
    import aiohttp

    service = unique_service("live")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{topology.url}/ws/live?service={service}") as ws,
    ):
        sent: list[str] = []
        message = None
        for attempt in range(3):  # the subscription starts right after the upgrade; re-post if it raced
            text = f"live through haproxy {attempt}"
            sent.append(text)
            status, _, _ = await asyncio.to_thread(
                http, "POST", f"{topology.url}/log", {"level": "warn", "message": text, "service": service}
            )
            assert status == 202
            with contextlib.suppress(asyncio.TimeoutError):
                message = await ws.receive(timeout=5)
                break
        assert message is not None and message.type == aiohttp.WSMsgType.TEXT, message
        entry = json.loads(message.data)
        assert entry["service"] == service and entry["level"] == "warn" and entry["message"] in sent


def test_dashboard_loads_through_haproxy(topology: Topology) -> None:
    """GET / through HAProxy is the dashboard page, and the assets it references load too."""
    status, page, headers = http("GET", f"{topology.url}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(/assets/[^"]+)"', page)
    assert "/assets/app.js" in assets
    for asset in assets:
        status, _, _ = http("GET", f"{topology.url}{asset}")
        assert status == 200, asset


def test_routing_health_and_statistics(topology: Topology) -> None:
    """/health through HAProxy is a query instance's; /lb/health is HAProxy's own; the statistics page and
    Prometheus exporter answer on the stats port and list every server UP."""
    status, health, _ = http("GET", f"{topology.url}/health")
    assert status == 200 and "query" in health["service"]
    status, text, _ = http("GET", f"{topology.url}/lb/health")
    assert status == 200, text
    status, page, _ = http("GET", f"{topology.stats_url}/stats")
    assert status == 200 and "ingest" in page and "query" in page
    states = topology.server_states()
    assert states.get("query/query-1") == "UP" and states.get("ingest/ingest-2") == "UP", states
    status, metrics, _ = http("GET", f"{topology.stats_url}/metrics")
    assert status == 200 and "haproxy_backend_active_servers" in metrics
    # GET on a write path reaches ingest (which only takes POST), not the query role's 404.
    status, _, headers = http("GET", f"{topology.url}/logs")
    assert status == 405 and "POST" in headers.get("Allow", "")


def test_oversized_body_is_refused_before_it_is_read(topology: Topology) -> None:
    """A Content-Length over 8 MiB gets HAProxy's JSON 413 without HAProxy waiting for the body."""
    with socket.create_connection(("127.0.0.1", int(topology.url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(
            b"POST /logs HTTP/1.1\r\nHost: oglog\r\nContent-Type: application/x-ndjson\r\n"
            b"Content-Length: 9000000\r\nConnection: close\r\n\r\n"
        )
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert json.loads(body)["details"][0]["field"] == "body"


def test_rate_limit_answers_429_with_retry_after(topology: Topology) -> None:
    """With OGLOG_RATE_LIMIT=5, the sixth request from one address in 10 s is a JSON 429 with Retry-After
    (a second HAProxy on the same backends, so the shared one keeps its default limit)."""
    haproxy, url, _ = start_haproxy(
        topology.workdir / "haproxy-limited",
        {"ingest": topology.ingest_ports[1:], "query": [topology.query_port]},
        OGLOG_RATE_LIMIT="5",
    )
    try:
        statuses = [http("GET", f"{url}/api/stats")[0] for _ in range(5)]
        assert statuses == [200] * 5
        status, body, headers = http("GET", f"{url}/api/stats")
        assert status == 429 and headers["Retry-After"] == "10"
        assert "more than 5 requests" in body["details"][0]["reason"]
    finally:
        haproxy.stop()


def test_container_healthcheck_script(topology: Topology) -> None:
    """compose/healthcheck.py (the image's `oglog-healthcheck`) exits 0 for a healthy role, 1 for none."""

    def check(port: int) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", ""), "HTTP_HOST": "0.0.0.0", "HTTP_PORT": str(port)}
        return subprocess.run(
            [sys.executable, str(HEALTHCHECK)], capture_output=True, text=True, env=env, timeout=30
        )

    healthy = check(topology.query_port)
    assert healthy.returncode == 0 and '"status": "ok"' in healthy.stdout, healthy
    nobody = check(free_port())
    assert nobody.returncode == 1 and "/health" in nobody.stderr


def test_killing_an_ingest_process_loses_no_request(topology: Topology) -> None:
    """SIGKILL one of the two ingest processes: every request through HAProxy still gets 202 (connection
    failures are retried on the other instance), health checks take the dead one out, and every accepted
    entry is stored exactly once."""
    service = unique_service("failover")
    victim = topology.ingest[0]
    victim.kill()

    def post(i: int) -> int:
        entry = {"level": "info", "message": f"during failover {i}", "service": service}
        return http("POST", f"{topology.url}/log", entry)[0]

    assert [post(i) for i in range(30)] == [202] * 30
    poll(lambda: topology.server_states().get("ingest/ingest-1") == "DOWN", timeout=15)
    assert topology.server_states()["ingest/ingest-2"] == "UP"
    assert [post(i) for i in range(30, 50)] == [202] * 20
    assert http("GET", f"{topology.url}/lb/health")[0] == 200
    wait_stored(topology.url, service, 50)
