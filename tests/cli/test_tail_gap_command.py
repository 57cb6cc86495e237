"""`oglog tail` names the `oglog query` command for what it missed (after a reconnect; past a backfill's
BACKFILL_MAX) with the tail's own filters, shell-quoted, so that command selects what the tail would have
shown - not every service's entries of the span (new-user finding: `--service r8tail` was left out)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import re
import shlex
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from oglogstream.cli import build_parser
from oglogstream.cli._backfill import BACKFILL_MAX, BACKFILL_PAGE, Seen, backfill
from oglogstream.cli._filters import filter_params
from oglogstream.cli._http import Target
from oglogstream.cli.tail import filter_flags, gap_notice

T0 = dt.datetime(2026, 11, 30, 6, 24, 51, tzinfo=dt.timezone.utc).timestamp()
FILTERS = [
    "--service", "r8tail", "--service", "o'brien svc", "--level", "error,fatal", "-q", "card declined",
    "--attr", "region=eu west", "--attr", "n>5", "--param", "logger=app.db",
]


def _query_argv(text: str) -> list[str]:
    """The `oglog query ...` command inside a stderr line, split as a POSIX shell would."""
    match = re.search(r"(oglog query .*?--to \S+?Z)", text)
    assert match is not None, text
    argv = shlex.split(match.group(1))
    assert argv[:2] == ["oglog", "query"], argv
    return argv[1:]


def test_the_reconnect_notice_names_the_issue_example() -> None:
    """`oglog tail --service r8tail`: the notice's command carries `--service r8tail`."""
    args = build_parser().parse_args(["tail", "--service", "r8tail"])
    notice = gap_notice(T0, T0 + 48, filter_flags(args))
    assert ("they are stored: oglog query --service r8tail --from 2026-11-30T06:24:50Z "
            "--to 2026-11-30T06:25:40Z)") in notice


def test_the_reconnect_notice_command_selects_what_the_tail_showed() -> None:
    """Every filter flag (repeated, with spaces and quotes) survives the shell: `oglog query` parses the
    command into the tail's own query parameters, plus the span."""
    tail_args = build_parser().parse_args(["tail", *FILTERS])
    argv = _query_argv(gap_notice(T0, T0 + 48, filter_flags(tail_args)))
    query_args = build_parser().parse_args(argv)
    assert query_args.command == "query"
    assert filter_params(query_args) == filter_params(tail_args)
    assert (query_args.start, query_args.end) == ("2026-11-30T06:24:50Z", "2026-11-30T06:25:40Z")


def test_the_reconnect_notice_stays_terminal_safe() -> None:
    """A control character in a filter is escaped, not written to the terminal as is."""
    args = build_parser().parse_args(["tail", "--service", "evil\x1b[2Jname\n"])
    notice = gap_notice(T0, T0 + 1, filter_flags(args))
    assert "\x1b" not in notice and notice.count("\n") == 1
    assert "\\u001b[2Jname\\n" in notice


def test_without_filters_the_command_is_the_span_alone() -> None:
    """A tail without filters: the command is just the span."""
    args = build_parser().parse_args(["tail"])
    assert "(they are stored: oglog query --from " in gap_notice(T0, T0 + 1, filter_flags(args))


@contextlib.contextmanager
def _endless_logs() -> Iterator[str]:
    """A local HTTP server whose GET /api/logs always has a next page (X-Next-Cursor): its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            cursor = int(parse_qs(urlsplit(self.path).query).get("cursor", ["0"])[0])
            page = [{"id": f"e{cursor + i}", "timestamp": "2026-11-30T06:25:00Z", "message": "m"}
                    for i in range(BACKFILL_PAGE)]
            body = json.dumps(page).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Next-Cursor", str(cursor + BACKFILL_PAGE))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_backfill_past_its_bound_names_the_rest_with_the_filters() -> None:
    """Past BACKFILL_MAX the backfill's line names the rest's `oglog query` with the tail's filters too."""
    with _endless_logs() as url:
        tail_args = build_parser().parse_args(["tail", "--url", url, *FILTERS])
        err = io.StringIO()
        printed = backfill(
            Target.from_args(tail_args), filter_params(tail_args), "2026-11-30T06:24:50Z",
            "2026-11-30T06:25:40Z", Seen(), lambda entry: None, err, filter_flags(tail_args),
        )
    assert printed == BACKFILL_MAX
    line = err.getvalue()
    assert f"stopped at {BACKFILL_MAX}, the rest: oglog query --service r8tail" in line
    query_args = build_parser().parse_args(_query_argv(line))
    assert filter_params(query_args) == filter_params(tail_args)
