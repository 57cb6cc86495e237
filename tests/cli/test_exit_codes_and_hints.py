"""Exit codes as docs/cli.md gives them, and the one-line advice a new user needs: keys, base URL, a second
stack, the demo with auth on, and a bench rate measured over the real run."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.stack.auth_helpers import auth_stack
from tests.stack.helpers import running_app

from .helpers import oglog, start_oglog

pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def accepting_logs(first_post: asyncio.Event | None = None) -> AsyncIterator[str]:
    """A real local HTTP server: /health answers 200, POST /logs accepts every line (202 with the count);
    `first_post` is set when the first batch arrives."""

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def logs(request: web.Request) -> web.Response:
        lines = [line for line in (await request.read()).splitlines() if line.strip()]
        if first_post is not None:
            first_post.set()
        return web.json_response({"accepted": len(lines)}, status=202)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/logs", logs)
    async with running_app(None, app=app) as url:  # type: ignore[arg-type]
        yield url


class TestSendKeys:
    async def test_send_without_a_key_or_with_a_query_key_gives_the_one_line_hint(
        self, nats_server: Any, chdb_dsn: str, tmp_path: Path
    ) -> None:
        """Auth on: no key is `HTTP 401: Authorization: ...`, a query-only key `HTTP 403: scope: ...`, each
        once, in the summary line, with the advice every command gives; no raw problem body, exit 1."""
        async with auth_stack(nats_server.url, chdb_dsn, tmp_path) as stack:
            without = await oglog("send", "--timeout", "5", "hello", url=stack.base)
            query_only = await oglog("send", "--timeout", "5", "hello", url=stack.base,
                                     env={"OGLOG_API_KEY": stack.keys["query"]})
            reader = await oglog("query", url=stack.base)
        hint = ("(this command needs a key with the ingest scope in --api-key or $OGLOG_API_KEY; "
                "create one with `oglog keys create --scope ingest`)")
        assert without.code == query_only.code == 1
        summary = "oglog send: 0 of 1 entries accepted; not accepted: 1 (refused by the server); last error: "
        assert without.err.startswith(f"{summary}HTTP 401: Authorization: ")
        assert query_only.err.startswith(f"{summary}HTTP 403: scope: ")
        for result in (without, query_only):
            assert result.err.endswith(f"{hint}\n") and result.err.count("\n") == 1
            assert '{"type"' not in result.err
        assert reader.code == 1 and "the query scope" in reader.err


class TestBench:
    async def test_the_rate_is_over_the_whole_duration(self) -> None:
        """--rate 100 --duration 1.5 in batches of 100 schedules batches at 0 s and 1 s: 200 entries over a
        run of at least 1.5 s is at most 133/s, not the 200/s of the batches' span."""
        async with accepting_logs() as url:
            result = await oglog("bench", url, "--rate", "100", "--duration", "1.5", "--batch-size", "100")
        assert result.code == 0, result.err
        match = re.search(r"achieved   (\d+) entries/s \(200 accepted in ([\d.]+) s\)", result.out)
        assert match, result.out
        rate, elapsed = int(match.group(1)), float(match.group(2))
        assert elapsed >= 1.5 and rate == round(200 / elapsed) and rate <= 134

    async def test_ctrl_c_prints_the_summary_and_exits_130(self) -> None:
        """SIGINT during a run: bench stops, prints what ran and exits 130 (not 0)."""
        first_post = asyncio.Event()
        async with accepting_logs(first_post) as url:
            proc = await start_oglog("bench", url, "--duration", "60")
            await asyncio.wait_for(first_post.wait(), 30)
            proc.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 130, err.decode()
        assert "achieved" in out.decode() and "refused    0" in out.decode()


class TestUrlHints:
    @pytest.mark.parametrize("command", ["query", "stats", "tail", "send", "doctor"])
    async def test_a_route_url_is_refused_with_the_base_url(self, command: str) -> None:
        """--url naming a route (/api/logs, /logs): exit 2 before any request, saying the base URL to use."""
        for route in ("/api/logs", "/logs"):
            result = await oglog(command, *(["x"] if command == "send" else []), url=f"http://127.0.0.1:9{route}")
            assert result.code == 2, result.err
            assert f"use 'http://127.0.0.1:9', not 'http://127.0.0.1:9{route}'" in result.err

    @pytest.mark.parametrize("command", ["query", "stats", "tail"])
    async def test_a_404_says_to_check_the_base_url(self, command: str) -> None:
        """A server without the API's routes (a wrong path prefix): HTTP 404 plus the base-URL question."""
        async with accepting_logs() as url:
            result = await oglog(command, url=f"{url}/prefix")
        assert result.code == 1
        assert "HTTP 404" in result.err and f"(is {url}/prefix the stack's base URL" in result.err


class TestServerCommands:
    async def test_demo_with_auth_and_no_ingest_key_refuses_to_start(self, tmp_path: Path) -> None:
        """`oglog demo --require-auth`: without $OGLOG_API_KEY, or with a query-only key, exit 2 naming the
        variable and the command that makes a key; nothing is started."""
        data = tmp_path / "data"
        created = await oglog("keys", "create", "--data-dir", str(data), "--scope", "query")
        query_key = created.out.strip().splitlines()[-1]
        assert query_key.startswith("ogl_")
        none = await oglog("demo", "--require-auth", "--data-dir", str(data), "--port", "0")
        narrow = await oglog("demo", "--require-auth", "--data-dir", str(data), "--port", "0",
                             env={"OGLOG_API_KEY": query_key})
        assert none.code == narrow.code == 2
        assert "needs an ingest key in OGLOG_API_KEY" in none.err and "oglog keys create" in none.err
        assert "OGLOG_API_KEY: key" in narrow.err and "lacks the ingest scope" in narrow.err
        assert not (data / "nats").exists()

    async def test_a_data_dir_in_use_names_data_dir_and_a_port_in_use_names_port(
        self, tmp_path: Path
    ) -> None:
        """Second stack on a locked data dir: the error says to pass --data-dir; a port in use: --port."""
        from oglogstream.stack.config import StackConfig
        from oglogstream.stack.server.supervisor import exclusive_lock, listen_error

        data = tmp_path / "data"
        with exclusive_lock(data / "oglog.lock", "held by this test"):
            second = await oglog("stack", "up", "--data-dir", str(data), "--port", "0")
        assert second.code == 1 and "in use by another oglog process" in second.err
        assert "--data-dir" in second.err
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            with socket.socket() as again, pytest.raises(OSError) as refused:
                again.bind(("127.0.0.1", port))
            line = listen_error(StackConfig(http_port=port), refused.value)
            # A port in use fails before the data dir is created (or a store migrated) for nothing.
            taken = await oglog("stack", "up", "--data-dir", str(tmp_path / "fresh"), "--port", str(port))
        assert refused.value.errno == errno.EADDRINUSE
        assert line.startswith(f"cannot listen on 127.0.0.1:{port}: ") and "--port N" in line
        assert "make run PORT=N" in line
        assert taken.code == 1 and f"cannot listen on 127.0.0.1:{port}" in taken.err
        assert not (tmp_path / "fresh").exists()


    def test_a_new_store_logs_its_schema_at_info_not_as_a_warning(
        self, chdb_dsn: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A fresh data dir's first start applies every migration at INFO (routine, not a warning); a second
        start applies nothing and says nothing."""
        from oglogstream.stack.storage import migrations
        from oglogstream.stack.storage.storage import Storage

        storage = Storage(chdb_dsn)
        try:
            with caplog.at_level(logging.INFO, logger=migrations.__name__):
                storage.ensure_schema()
                first = [(r.levelno, r.getMessage()) for r in caplog.records]
                caplog.clear()
                storage.ensure_schema()
        finally:
            storage.close()
        assert first and all(level == logging.INFO for level, _ in first), first
        assert [m for _, m in first] == [f"storage: applying migration {m.version} ({m.name})"
                                         for m in migrations.MIGRATIONS]
        assert not [r for r in caplog.records if r.name == migrations.__name__]


class TestMalformedUrl:
    @pytest.mark.parametrize(
        "url",
        ["http://[::1", "http://127.0.0.1:99999", "http://127.0.0.1:0", "http://h:x", "http://h\n", "http://h\t",
         "http://a b", "ftp://h"],
    )
    def test_a_url_that_cannot_be_parsed_is_a_usage_error(self, url: str) -> None:
        """The attacker's `--url 'http://[::1'` gave a ValueError traceback: one line naming --url, exit 2."""
        import argparse

        from oglogstream.cli._http import EXIT_CONFIG, CliError, Target

        with pytest.raises(CliError, match=r"^--url / OGLOG_URL: expected a URL like") as caught:
            Target.from_args(argparse.Namespace(url=url, api_key=None, timeout=None))
        assert caught.value.code == EXIT_CONFIG

    @pytest.mark.parametrize("command", ["stats", "send", "tail"])
    async def test_the_command_says_so_in_one_line(self, command: str) -> None:
        """End to end (the reviewer's `--url $'http://h\\n'`: a traceback for query, an endless reconnect for
        tail, the URL counted as a refused entry by send): one line on stderr, exit status 2."""
        result = await oglog(command, *(["x"] if command == "send" else []), url="http://h\n")
        assert result.code == 2 and "Traceback" not in result.err, result.err
        assert result.err.strip().count("\n") == 0 and "--url / OGLOG_URL: expected a URL like" in result.err
