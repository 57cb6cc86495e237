"""The client commands (send, query, tail, stats, doctor, bench) against a real stack: nats-server + chDB."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.stack.auth_helpers import auth_stack
from tests.stack.helpers import all_roles, running_app, wait_for

from .helpers import oglog, start_oglog

pytestmark = pytest.mark.timeout(120)


async def _stored(url: str, service: str, count: int) -> list[dict[str, Any]]:
    """The entries of `service` (oglog query --json), once there are `count` of them."""

    async def probe() -> list[dict[str, Any]] | None:
        result = await oglog("query", "--service", service, "--json", "--limit", "1000", url=url)
        assert result.code == 0, result.err
        rows = [json.loads(line) for line in result.out.splitlines()]
        return rows if len(rows) >= count else None

    rows: list[dict[str, Any]] = await wait_for(probe, timeout=30, interval=0.3)
    return rows


class TestSendAndQuery:
    async def test_arguments_and_stdin_lines_arrive_with_their_fields(
        self, nats_server: Any, chdb_dsn: str
    ) -> None:
        """An entry from arguments and one per stdin line (text and JSON) are stored with level, service,
        attributes and timestamp as given, and exit 0."""
        service = f"cli-{uuid.uuid4().hex[:8]}"
        async with all_roles(nats_server.url, chdb_dsn) as (url, _):
            sent = await oglog("send", "--level", "error", "--service", service, "--attr", "user=7",
                               "payment failed", url=url)
            assert (sent.code, sent.err) == (0, "")
            stamp = (datetime.now(timezone.utc) - timedelta(hours=1)).replace(microsecond=0)  # exact float
            lines = "plain text line\n\n" + json.dumps({
                "level": "WARNING", "message": "json line", "timestamp": stamp.isoformat(),
                "attributes": {"attempt": 2},
            }) + "\n"
            from_stdin = await oglog("send", "--service", service, url=url, stdin=lines)
            assert (from_stdin.code, from_stdin.err) == (0, "")
            rows = await _stored(url, service, 3)
        by_message = {row["message"]: row for row in rows}
        assert set(by_message) == {"payment failed", "plain text line", "json line"}
        assert by_message["payment failed"]["level"] == "error"
        assert by_message["payment failed"]["attributes"]["user"] == "7"
        assert by_message["plain text line"]["level"] == "info"
        assert by_message["json line"]["level"] == "warn"
        assert by_message["json line"]["timestamp"] == stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert by_message["json line"]["attributes"]["attempt"] in (2, "2")  # typed values: helper E's work

    async def test_a_refused_entry_makes_send_fail_naming_the_reason(
        self, nats_server: Any, chdb_dsn: str
    ) -> None:
        """An entry the server refuses (timestamp older than the retention) gives exit 1 and the reason; the
        valid entry of the same run is still stored."""
        service = f"cli-{uuid.uuid4().hex[:8]}"
        lines = "\n".join([
            json.dumps({"message": "too old", "timestamp": "2001-01-01T00:00:00Z"}),
            "fine",
            '{"message": "bad field", "hostname": "x"}',
        ])
        async with all_roles(nats_server.url, chdb_dsn) as (url, _):
            result = await oglog("send", "--service", service, url=url, stdin=lines)
            rows = await _stored(url, service, 1)
        assert result.code == 1
        assert "1 of 3 entries accepted" in result.err
        assert "hostname: not a field" in result.err  # the line refused before sending, by name
        assert "rejected" in result.err or "refused" in result.err
        assert [row["message"] for row in rows] == ["fine"]

    async def test_a_large_stdin_is_paced_not_dropped(self, nats_server: Any, chdb_dsn: str) -> None:
        """120,000 lines (more than send lets wait in the SDK's buffer: half of max_buffer_bytes, ~104,000
        short records) are all accepted and stored: exit 0, stats count every one."""
        service = f"cli-{uuid.uuid4().hex[:8]}"
        count = 120_000
        async with all_roles(nats_server.url, chdb_dsn) as (url, _):
            lines = "".join(f"line {i}\n" for i in range(count))
            result = await oglog("send", "--service", service, url=url, stdin=lines, timeout=100)

            async def stored() -> bool:
                stats = await oglog("stats", "--service", service, "--json", url=url)
                return bool(json.loads(stats.out)["total_logs"] == count)

            await wait_for(stored, timeout=30, interval=0.5)
        assert (result.code, result.err) == (0, "")

    async def test_unreachable_server_fails_within_the_timeout(self) -> None:
        """Nothing listening: exit 3 (cannot reach) after --timeout, saying the entry was not delivered and
        why in plain words (not the SDK's internal reason name `shutdown`), without the SDK's advice about
        handler settings a `send` user does not have."""
        result = await oglog("send", "--timeout", "1", "hello", url="http://127.0.0.1:9")
        assert result.code == 3
        assert ("0 of 1 entries accepted; not accepted: 1 (server unreachable until the --timeout 1s"
                " deadline); last error: cannot reach") in result.err
        assert "shutdown" not in result.err and "spool_dir" not in result.err

    async def test_query_follows_cursors_up_to_the_limit(self, nats_server: Any, chdb_dsn: str) -> None:
        """25 entries read in pages of 10: --limit 25 prints all 25 once, newest first; --limit 12 stops at
        12; the table has one line per entry."""
        service = f"cli-{uuid.uuid4().hex[:8]}"
        async with all_roles(nats_server.url, chdb_dsn) as (url, _):
            lines = "".join(f"entry {i:02d}\n" for i in range(25))
            assert (await oglog("send", "--service", service, url=url, stdin=lines)).code == 0
            await _stored(url, service, 25)
            paged = await oglog("query", "--service", service, "--page-size", "10", "--limit", "25", "--json",
                                url=url)
            short = await oglog("query", "--service", service, "--page-size", "10", "--limit", "12", url=url)
            since = await oglog("query", "--service", service, "--since", "1h", "--json", url=url)
            future = await oglog("query", "--service", service, "--from", "2299-01-01T00:00:00Z", url=url)
        rows = [json.loads(line) for line in paged.out.splitlines()]
        assert paged.code == 0
        assert sorted(r["message"] for r in rows) == [f"entry {i:02d}" for i in range(25)]
        assert len({r["id"] for r in rows}) == 25
        stamps = [(r["timestamp"], r["id"]) for r in rows]
        assert stamps == sorted(stamps, reverse=True)
        assert short.code == 0 and len(short.out.splitlines()) == 12
        assert all(service in line for line in short.out.splitlines())
        assert len(since.out.splitlines()) == 25
        assert future.code == 0 and future.out == "" and "no entries match" in future.err

    async def test_server_errors_are_one_line_with_field_and_reason(
        self, nats_server: Any, chdb_dsn: str
    ) -> None:
        """A bad --from reaches the API and comes back as `HTTP 400: from: ...`; a 400 to the flags of a
        reading command is a usage error (exit 2), the same from query, stats and tail (`--attr 'x>abc'`);
        bad flags the CLI sees itself are exit 2; a closed port is exit 3."""
        async with all_roles(nats_server.url, chdb_dsn) as (url, _):
            bad = await oglog("query", "--from", "yesterday", url=url)
            usage = await oglog("query", "--since", "soon", url=url)
            bad_attr = await oglog("query", "--attr", "no-operator", url=url)
            not_a_number = [await oglog(command, "--attr", "x>abc", url=url)
                            for command in ("query", "stats", "tail")]
        assert bad.code == 2
        assert bad.err.startswith("oglog query: error: HTTP 400: from: ") and bad.err.count("\n") == 1
        assert [r.code for r in not_a_number] == [2, 2, 2]
        for command, result in zip(("query", "stats", "tail"), not_a_number, strict=True):
            assert result.err.startswith(f"oglog {command}: error: HTTP 400: attr.x: "), result.err
        assert usage.code == 2 and "--since" in usage.err
        assert bad_attr.code == 2 and "--attr: expected KEY=VALUE" in bad_attr.err
        unreachable = await oglog("stats", url="http://127.0.0.1:9")
        assert unreachable.code == 3 and "cannot reach http://127.0.0.1:9" in unreachable.err


class TestTailAndStats:
    async def test_tail_prints_an_entry_sent_after_it_connected(
        self, nats_server: Any, chdb_dsn: str
    ) -> None:
        """`tail --json --count 1` filtered on a service prints the entry sent to that service (and nothing
        of another service)."""
        service = f"cli-{uuid.uuid4().hex[:8]}"
        async with all_roles(nats_server.url, chdb_dsn) as (url, _):
            tail = await start_oglog("tail", "--service", service, "--json", "--count", "1", url=url)
            try:
                # The tail only sees entries accepted after it subscribed: send until it has printed one.
                for _ in range(40):
                    await oglog("send", "--service", "someone-else", "other", url=url)
                    await oglog("send", "--service", service, "--level", "error", "live one", url=url)
                    try:
                        await asyncio.wait_for(tail.wait(), 0.5)
                        break
                    except asyncio.TimeoutError:
                        continue
                assert tail.returncode == 0
                assert tail.stdout is not None
                first = json.loads((await tail.stdout.readline()).decode())
            finally:
                if tail.returncode is None:
                    tail.kill()
                    await tail.wait()
        assert (first["service"], first["level"], first["message"]) == (service, "error", "live one")

    async def test_tail_says_it_reconnects_while_the_server_is_away(self) -> None:
        """Nothing listening: tail keeps trying, saying so on stderr, instead of exiting."""
        tail = await start_oglog("tail", url="http://127.0.0.1:9")
        try:
            assert tail.stderr is not None
            line = (await asyncio.wait_for(tail.stderr.readline(), 20)).decode()
            assert "cannot reach http://127.0.0.1:9" in line and "reconnecting in" in line
            assert tail.returncode is None
        finally:
            tail.terminate()
            await tail.wait()

    async def test_stats_table_and_json(self, nats_server: Any, chdb_dsn: str) -> None:
        """stats --json is the API's object; the table lists every level and the service with its count."""
        service = f"cli-{uuid.uuid4().hex[:8]}"
        async with all_roles(nats_server.url, chdb_dsn) as (url, _):
            assert (await oglog("send", "--service", service, "--level", "error", "x", url=url)).code == 0
            await _stored(url, service, 1)
            as_json = await oglog("stats", "--json", url=url)
            as_table = await oglog("stats", "--service", service, url=url)
        stats = json.loads(as_json.out)
        assert stats["logs_by_service"][service] == 1
        assert as_table.code == 0
        assert "total  1" in as_table.out
        assert any(line.split() == ["error", "1"] for line in as_table.out.splitlines())
        assert any(line.split() == [service, "1"] for line in as_table.out.splitlines())


class TestDoctorAndBench:
    async def test_doctor_is_green_on_a_healthy_stack(self, nats_server: Any, chdb_dsn: str) -> None:
        """Every check passes (✓), exit 0."""
        async with all_roles(nats_server.url, chdb_dsn) as (url, _):
            result = await oglog("doctor", url)
        assert result.code == 0, result.out + result.err
        for check in ("reachable", "nats", "storage", "auth", "round trip"):
            assert f"✓ {check}" in result.out
        assert "all checks passed" in result.out

    async def test_doctor_is_red_with_a_wrong_or_narrow_key(
        self, nats_server: Any, chdb_dsn: str, tmp_path: Path
    ) -> None:
        """Auth on: an unknown key fails the auth check with 401 and how to fix it; a query-only key is told
        the ingest scope is missing; the right keys pass. Exit 1 on failure; unreachable is exit 3."""
        async with auth_stack(nats_server.url, chdb_dsn, tmp_path) as stack:
            wrong = await oglog("doctor", stack.base, "--api-key", "oglog_" + "x" * 40)
            narrow = await oglog("doctor", stack.base, "--api-key", stack.keys["query"])
            tail = await oglog("tail", "--url", stack.base, "--api-key", stack.keys["ingest"])
            query = await oglog("query", "--url", stack.base)
            right = await oglog("query", "--url", stack.base, "--api-key", stack.keys["query"])
        assert wrong.code == 1
        assert "✗ auth" in wrong.out and "401" in wrong.out and "--api-key" in wrong.out
        assert narrow.code == 1
        assert "✗ auth" in narrow.out and "403" in narrow.out and "'ingest' scope" in narrow.out
        assert tail.code == 1 and "HTTP 403" in tail.err and "query scope" in tail.err
        assert query.code == 1 and query.err.startswith("oglog query: error: HTTP 401: ")
        assert right.code == 0
        unreachable = await oglog("doctor", "http://127.0.0.1:9")
        assert unreachable.code == 3 and "✗ reachable" in unreachable.out

    async def test_doctor_is_red_when_nats_is_down(self) -> None:
        """An ingest process whose NATS does not answer: nats ✗ with the fix, ingestion ✗ (503), exit 1."""
        from oglogstream.stack.broker.natsd import free_port
        from oglogstream.stack.config import StackConfig

        config = StackConfig(roles=("ingest",), nats_url=f"nats://127.0.0.1:{free_port()}")
        async with running_app(config) as url:
            result = await oglog("doctor", url, "--timeout", "2")
        assert result.code == 1, result.out
        assert "✓ reachable" in result.out
        assert "✗ nats" in result.out and "NATS_URL" in result.out
        assert "✓ storage     not used by this process" in result.out
        assert "✗ ingestion" in result.out and "HTTP 503" in result.out

    async def test_bench_short_run_reports_rate_and_latency(self, nats_server: Any, chdb_dsn: str) -> None:
        """1 s at 500 entries/s in batches of 50: everything accepted, summary with rate and percentiles."""
        async with all_roles(nats_server.url, chdb_dsn) as (url, _):
            result = await oglog("bench", url, "--rate", "500", "--duration", "1", "--batch-size", "50")
        assert result.code == 0, result.out + result.err
        assert "(500 accepted in" in result.out
        assert "refused    0" in result.out
        assert "requests   10 (202: 10)" in result.out
        assert "p50" in result.out and "p99" in result.out


@contextlib.asynccontextmanager
async def one_entry_per_connection(seen_queries: list[list[tuple[str, str]]]) -> AsyncIterator[str]:
    """A real local live-tail server: each connection gets one error entry, then a 1001 close (as on a
    server shutdown). Records each connection's query parameters as the server reads them; yields the base
    URL."""
    from aiohttp import web

    async def live(request: web.Request) -> web.WebSocketResponse:
        seen_queries.append(list(request.query.items()))
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        number = len(seen_queries)
        await ws.send_json({"id": f"e{number}", "timestamp": "2026-11-29T10:00:00.000000Z",
                            "level": "error", "message": f"entry {number}", "service": "s"})
        await ws.close(code=1001, message=b"going away")
        return ws

    app = web.Application()
    app.router.add_get("/ws/live", live)
    async with running_app(None, app=app) as url:  # type: ignore[arg-type]
        yield url


class TestTailOutput:
    async def test_tail_reconnects_after_the_server_closes_the_socket(self) -> None:
        """The server closes after each entry: tail says so on stderr, reconnects, prints the next
        connection's entry too, and sends the same filters (attribute operators included) each time."""
        seen_queries: list[list[tuple[str, str]]] = []
        async with one_entry_per_connection(seen_queries) as url:
            tail = await start_oglog("tail", "--json", "--count", "2", "--level", "error", "--attr", "user=7",
                                     "--attr", "ms>500", "--attr", "ms<=900", "--attr", "flag!=*", url=url)
            out, err = await asyncio.wait_for(tail.communicate(), 30)
        assert tail.returncode == 0, err
        assert [json.loads(line)["message"] for line in out.decode().splitlines()] == ["entry 1", "entry 2"]
        assert re.search(r"connection closed \(1001\); reconnecting in 0\.[2-5]s", err.decode())
        assert "the server said: going away" in err.decode()  # the close reason (1013: entries missing)
        assert "reconnected" in err.decode()
        # The API's query-string forms (docs/api.md): `k>5` has no value, `k<=5` is the name `attr.k<`.
        expected = [("level", "error"), ("attr.user", "7"), ("attr.ms>500", ""), ("attr.ms<", "900"),
                    ("attr.flag!", "*")]
        assert seen_queries[:2] == [expected] * 2

    async def test_tail_colours_levels_only_on_a_terminal(self) -> None:
        """stdout a terminal (a pty): the level is coloured (red for error); piped: plain text."""
        async with one_entry_per_connection([]) as url:
            main, child = pty.openpty()
            try:
                env = {**os.environ, "OGLOG_URL": url}
                env.pop("NO_COLOR", None)
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "oglogstream.cli", "tail", "--count", "1",
                    stdout=child, stderr=asyncio.subprocess.PIPE, env=env,
                )
                await asyncio.wait_for(proc.wait(), 30)
                on_tty = os.read(main, 65536).decode()
            finally:
                os.close(main)
                os.close(child)
            piped = await oglog("tail", "--count", "1", url=url)
        assert proc.returncode == 0
        assert "\033[31mERROR\033[0m" in on_tty and "entry 1" in on_tty
        assert piped.out.startswith("2026-11-29T10:00:00.000000Z ERROR s  entry ")
        assert "\033[" not in piped.out


class TestTailReconnectDelay:
    def test_pause_is_drawn_from_the_upper_half_of_the_backoff(self) -> None:
        """Clients closed together (a 1013 to every client of a hub) spread their reconnects over
        [backoff/2, backoff] instead of returning in lockstep; the backoff's cap bounds the pause."""
        from oglogstream.cli.tail import RECONNECT_INITIAL, RECONNECT_MAX, reconnect_delay

        assert reconnect_delay(RECONNECT_INITIAL, draw=0.0) == 0.2  # 0.25, rounded for the stderr line
        assert reconnect_delay(RECONNECT_INITIAL, draw=0.999) == 0.5
        assert reconnect_delay(RECONNECT_MAX, draw=0.0) == RECONNECT_MAX / 2
        assert reconnect_delay(RECONNECT_MAX, draw=0.999) == RECONNECT_MAX
        pauses = {reconnect_delay(RECONNECT_MAX) for _ in range(200)}
        assert len(pauses) > 10 and min(pauses) >= 5.0 and max(pauses) <= 10.0
