"""What the client commands print: a closed stdout ends them quietly, log data cannot drive the terminal, and
values are shown in the JSON spellings the filters take."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from oglogstream.cli._output import entry_line, print_json, table, value_text

from tests.stack.helpers import all_roles, running_app, wait_for

from .helpers import _env, oglog

pytestmark = pytest.mark.timeout(120)

#: Log data written to attack a terminal: OSC window title + BEL, clear screen, C1 CSI, bidi override, and a
#: line break that would forge a second log line.
EVIL_MESSAGE = "\x1b]0;TITLE\x07hi \x1b[2J \x9b31m \u202egnp.exe \u2066x\u2069 tab\there"
EVIL_ATTRS = {"ok": False, "nl": "a\n2026-11-29T00:00:00Z INFO  forged  hello", "esc\x1b[1m": "\x7f\x85"}
EVIL_ENTRY = {
    "id": "e1", "timestamp": "2026-11-29T10:00:00.000000Z", "level": "error", "service": "svc\x1b[31m",
    "message": EVIL_MESSAGE, "attributes": EVIL_ATTRS, "exception": "Traceback\n  boom\x1b[5m\r\n",
}
_RAW = ["\x1b", "\x07", "\x9b", "\x7f", "\x85", "\u202e", "\u2066", "\u2069", "\t", "\r"]


@contextlib.asynccontextmanager
async def fake_api(entries: list[dict[str, Any]], *, endless_live: bool = False) -> AsyncIterator[str]:
    """A real local HTTP server answering /api/logs with `entries`, /api/stats with a one-service count and
    /ws/live with an entry every 20 ms until the client goes away."""

    async def logs(request: web.Request) -> web.Response:
        return web.json_response(entries)

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"total_logs": 1, "logs_by_level": {"error": 1},
                                  "logs_by_service": {"svc\x1b[2J\u202e": 1}})

    async def live(request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        n = 0
        while not socket.closed and endless_live:
            n += 1
            await socket.send_json({**EVIL_ENTRY, "id": f"e{n}", "message": f"entry {n}"})
            await asyncio.sleep(0.02)
        return socket

    app = web.Application()
    app.router.add_get("/api/logs", logs)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/ws/live", live)
    async with running_app(None, app=app) as url:  # type: ignore[arg-type]
        yield url


async def _with_closed_stdout(*args: str, url: str) -> tuple[int, str]:
    """Run `oglog ARGS` with stdout a pipe whose reader is already gone; (exit code, stderr)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "oglogstream.cli", *args, stdin=asyncio.subprocess.DEVNULL,
            stdout=write_end, stderr=asyncio.subprocess.PIPE, env=_env(url, None),
        )
    finally:
        os.close(write_end)
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


class TestClosedStdout:
    async def test_tail_piped_into_head_exits_instead_of_reconnecting(self) -> None:
        """`oglog tail --json | head -1`: once the reader is gone tail exits 141 at its next entry, saying
        nothing (no reconnect loop, no traceback), though the server keeps sending."""
        async with fake_api([], endless_live=True) as url:
            read_end, write_end = os.pipe()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "oglogstream.cli", "tail", "--json", stdin=asyncio.subprocess.DEVNULL,
                stdout=write_end, stderr=asyncio.subprocess.PIPE, env=_env(url, None),
            )
            os.close(write_end)
            with os.fdopen(read_end, "rb") as reader:  # `head -1`: one line, then close
                first = await asyncio.to_thread(reader.readline)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert json.loads(first)["message"] == "entry 1"
        assert (proc.returncode, err.decode()) == (141, "")

    @pytest.mark.parametrize("command", [["query"], ["query", "--json"], ["stats"], ["stats", "--json"],
                                         ["tail", "--count", "1"]])
    async def test_every_command_ends_quietly_on_a_closed_stdout(self, command: list[str]) -> None:
        """query, stats and tail, table or JSON, writing into a closed pipe: exit 141 and an empty stderr."""
        async with fake_api([EVIL_ENTRY] * 500, endless_live=True) as url:
            code, err = await _with_closed_stdout(*command, url=url)
        assert (code, err) == (141, "")


class TestTerminalSafety:
    def test_no_control_or_bidi_character_reaches_the_table(self) -> None:
        """Every field of the human line is escaped: no ESC, BEL, C1, DEL, bidi or tab survives; the forged
        line break is `\\n` inside the value; the traceback keeps its own lines, indented."""
        text = entry_line(EVIL_ENTRY, colour=False)
        assert not any(char in text for char in _RAW)
        first, *trace = text.split("\n")
        assert first == (
            "2026-11-29T10:00:00.000000Z ERROR svc\\u001b[31m  "
            "\\u001b]0;TITLE\\u0007hi \\u001b[2J \\u009b31m \\u202egnp.exe \\u2066x\\u2069 tab\\there "
            'ok=false nl="a\\n2026-11-29T00:00:00Z INFO  forged  hello" "esc\\u001b[1m"="\\u007f\\u0085"'
        )
        assert trace == ["    Traceback", "      boom\\u001b[5m"]

    def test_table_cells_are_escaped(self) -> None:
        """stats' tables: a service name with ESC / bidi characters is printed escaped."""
        out = io.StringIO()
        table(["service", "entries"], [("svc\x1b[2J\u202e", 1)], out)
        escaped = "svc\\u001b[2J\\u202e"
        assert out.getvalue() == f"{'service':<{len(escaped)}}  entries\n{escaped}  1\n"

    def test_json_output_is_exact_and_terminal_safe(self) -> None:
        """--json: the same value comes back through json.loads, and no raw control/bidi character is
        written (json escapes C0; DEL, C1 and bidi are \\uXXXX too)."""
        out = io.StringIO()
        print_json(EVIL_ENTRY, out)
        assert json.loads(out.getvalue()) == EVIL_ENTRY
        assert not any(char in out.getvalue() for char in _RAW) and out.getvalue().count("\n") == 1

    async def test_query_and_stats_print_escaped_data_end_to_end(self) -> None:
        """The commands themselves: the table of `query` and `stats` holds no raw ESC/BEL/bidi character;
        stderr's server messages are escaped as well."""
        async with fake_api([EVIL_ENTRY]) as url:
            query = await oglog("query", url=url)
            stats = await oglog("stats", url=url)
        assert query.code == stats.code == 0
        for text in (query.out, stats.out):
            assert not any(char in text for char in _RAW)
        assert query.out.count("\n") == 3 and "svc\\u001b[2J\\u202e" in stats.out


class TestValueSpelling:
    @pytest.mark.parametrize(("value", "shown"), [
        (False, "false"), (True, "true"), (None, "null"), (7, "7"), (99.5, "99.5"), ("eu", "eu"),
        ("7", '"7"'), ("true", '"true"'), ("null", '"null"'), ("", '""'), ("a b", '"a b"'), ("k=v", '"k=v"'),
        ('say "hi"', '"say \\"hi\\""'), ("a\nb", '"a\\nb"'), ({"a": [1, None]}, '{"a":[1,null]}'),
        (["x"], '["x"]'), ("ünïcode", "ünïcode"),
    ])
    def test_values_show_in_their_json_spelling(self, value: object, shown: str) -> None:
        """Booleans, null and numbers as JSON; strings bare unless they would read as another value or blur
        `k=v k2=v2`, then JSON-quoted."""
        assert value_text(value) == shown

    async def test_the_spelling_shown_is_the_filter_that_finds_it(
        self, nats_server: Any, chdb_dsn: str
    ) -> None:
        """An entry with ok=false, n=7 and code="7" (a string) shows exactly those spellings, and `--attr`
        with the spelling shown for the boolean and the number finds the entry."""
        service = f"cli-{uuid.uuid4().hex[:8]}"
        line = json.dumps({"message": "typed", "attributes": {"ok": False, "n": 7, "code": "7"}})
        async with all_roles(nats_server.url, chdb_dsn) as (url, _):
            assert (await oglog("send", "--service", service, url=url, stdin=line + "\n")).code == 0

            async def stored() -> str | None:
                return (await oglog("query", "--service", service, url=url)).out or None

            shown: str = await wait_for(stored, timeout=30, interval=0.3)
            by_bool = await oglog("query", "--service", service, "--attr", "ok=false", url=url)
            by_number = await oglog("query", "--service", service, "--attr", "n=7", url=url)
        assert shown.rstrip("\n").endswith("typed ok=false n=7 code=\"7\"")
        assert by_bool.out == by_number.out == shown
