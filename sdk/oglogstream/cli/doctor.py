"""`oglog doctor`: check a stack end to end and say how to fix what is wrong.

Checks, in order: reachable (`GET /health`), NATS and storage state (from `/health`), auth (`GET /api/logs`
and `POST /log` with the key given), and an ingestion -> query round trip (one entry with a unique id, polled
on `/api/logs` until it appears, bounded by --timeout).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, TextIO

from . import _shapes
from ._http import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    PROXY_FIX,
    Answer,
    CliError,
    Target,
    UnexpectedAnswer,
    add_target_flags,
    decode_json,
    fetch,
    proxy_note,
    proxy_of,
)
from ._http import problem_line as _problem
from ._output import safe

__all__ = ["DOCTOR_SERVICE", "add_parser", "run"]

#: Seconds the whole check may take, every request and the round trip (ingestion -> JetStream -> processor
#: flush -> query) included.
DEFAULT_ROUND_TRIP_TIMEOUT = 20.0
#: Pause between two polls of /api/logs during the round trip.
POLL_INTERVAL = 0.25
#: The service the probe entry is logged under (so it can be recognised, and filtered out).
DOCTOR_SERVICE = "oglog-doctor"
_URL_FIX = "check --url: it must be the stack's base URL"
_KEY_HINT = (
    "pass one with --api-key or OGLOG_API_KEY (create it: oglog keys create --data-dir DIR --scope {scope})"
)


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "doctor", parents=parents, help="check a stack end to end and explain what is wrong",
        description="Check URL: reachable, NATS and storage state, the API key's scopes, and that an entry "
        f"sent to /log can be found by /api/logs (service {DOCTOR_SERVICE!r}). Exit 0 when every check "
        "passed, 1 when one failed, 3 when the URL cannot be reached.",
    )
    parser.add_argument("target_url", nargs="?", metavar="URL", help="the stack (default: --url, $OGLOG_URL, "
                        "http://127.0.0.1:8080)")
    add_target_flags(parser)
    parser.add_argument("--timeout", type=float, default=DEFAULT_ROUND_TRIP_TIMEOUT, metavar="SECONDS",
                        help="how long the whole check may take, round trip included (default: %(default)s)")


class _Report:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.failed = 0

    def ok(self, name: str, detail: str) -> None:
        self.out.write(f"✓ {name:<11} {detail}\n")

    def fail(self, name: str, detail: str, fix: str) -> None:
        self.failed += 1
        self.out.write(f"✗ {name:<11} {detail}\n  fix: {fix}\n")


def _auth_fix(response: Answer, scope: str) -> str:
    if response.status_code == 401:
        return "the server requires an API key; " + _KEY_HINT.format(scope=scope)
    return f"this key lacks the {scope!r} scope (or the Host/Origin is not allowed); " + _KEY_HINT.format(
        scope=scope)


def _health(client: Any, report: _Report, deadline: float) -> dict[str, Any] | int:
    """The health document, or the exit code when there is none: 3 when nothing answered (in time), 1 when
    something else than a stack answered."""
    started = time.monotonic()
    try:
        response = fetch(client, "GET", "/health", deadline=deadline)
    except CliError as exc:
        fix = "start the stack (`oglog stack up`) or pass the right --url / OGLOG_URL"
        if proxy_of(client) is not None:  # the proxy may be what fails: the message names it
            fix = f"{PROXY_FIX}, or {fix}"
        report.fail("reachable", safe(exc), fix if exc.code == EXIT_UNREACHABLE else _URL_FIX)
        return exc.code
    elapsed = (time.monotonic() - started) * 1000
    try:
        body = _shapes.health(decode_json(response.content))
    except UnexpectedAnswer as exc:
        note = proxy_note(client, response)
        report.fail("reachable", f"{client.base_url}/health answered {response.status_code} without the "
                    f"OgLogStream health document ({safe(exc)}){safe(note)}", PROXY_FIX if note else _URL_FIX)
        return EXIT_FAILED
    report.ok("reachable", f"{client.base_url} answered /health in {elapsed:.0f} ms "
              f"({safe(body.get('service'))})")
    return body


def _states(health: dict[str, Any], report: _Report) -> None:
    nats = health.get("nats_status")
    if nats == "CONNECTED":
        report.ok("nats", "connected")
    else:
        report.fail("nats", f"NATS is {safe(nats)}", "start NATS or check NATS_URL of the server (its stderr "
                    "names the URL it cannot reach); ingestion answers 503 until it is back")
    storage = health.get("storage_status")
    if storage is None:
        report.ok("storage", "not used by this process (an ingest-only role)")
    elif storage == "ok":
        report.ok("storage", "answers")
    else:
        report.fail("storage", f"storage is {safe(storage)}", "check CLICKHOUSE_DSN and that ClickHouse is "
                    "up; /metrics and the server's log say more")


def _found(answer: Answer, entry_id: str) -> bool:
    """Whether a 200 from /api/logs lists the probe. CliError (exit 1) for an answer that is not entries."""
    try:
        return any(e.get("id") == entry_id for e in _shapes.entries(decode_json(answer.content)))
    except UnexpectedAnswer as exc:
        raise CliError(f"unexpected answer from {answer.url}: {exc}") from None


def _round_trip(client: Any, report: _Report, deadline: float, stop: threading.Event) -> None:
    token = uuid.uuid4().hex
    entry = {"id": f"doctor-{token}", "level": "info", "service": DOCTOR_SERVICE,
             "message": f"oglog doctor probe {token}"}
    timeout = deadline - time.monotonic()
    response = fetch(client, "GET", "/api/logs", deadline=deadline, params={"limit": "1"})
    if response.status_code in (401, 403):
        report.fail("auth", f"query refused: {_problem(response)}", _auth_fix(response, "query"))
        return
    posted = fetch(client, "POST", "/log", deadline=deadline, json=entry)
    if posted.status_code in (401, 403):
        report.fail("auth", f"ingestion refused: {_problem(posted)}", _auth_fix(posted, "ingest"))
        return
    report.ok("auth", "ingest and query allowed" + (" (with the given key)" if "authorization" in
                                                     client.headers else ""))
    if posted.status_code != 202:
        report.fail("ingestion", f"POST /log: {_problem(posted)}", "see the reason above; a 503 means NATS "
                    "is down, a 404 that this URL does not serve the ingest role")
        return
    if response.status_code == 404:
        report.fail("round trip", "this URL does not serve /api/logs (no query role)",
                    "point doctor at a process that runs the query role")
        return
    started = time.monotonic()
    found: Answer | None = None
    # The deadline is checked before each poll: running out while waiting for the entry is this check's
    # failure (exit 1), not a request cut short (exit 3).
    while time.monotonic() < deadline and not stop.is_set():
        found = fetch(client, "GET", "/api/logs", deadline=deadline,
                      params={"service": DOCTOR_SERVICE, "q": token, "limit": "10"})
        if found.status_code == 200 and _found(found, entry["id"]):
            took = time.monotonic() - started
            report.ok("round trip", f"an entry sent to /log was queryable after {took:.1f} s")
            return
        if found.status_code not in (200, 503):
            break
        stop.wait(min(POLL_INTERVAL, max(deadline - time.monotonic(), 0.0)))
    detail = f"the probe {entry['id']} was accepted (202) but not queryable within {timeout:.0f} s"
    if found is not None and found.status_code != 200:
        detail += f" ({_problem(found)})"
    report.fail("round trip", detail, "check that a process role runs and can write to storage "
                "(oglog_consumer_pending in /metrics grows when it cannot); see `oglog dead-letters list`")


def run(args: argparse.Namespace, *, out: TextIO = sys.stdout, stop: threading.Event | None = None) -> int:
    if args.target_url:
        args.url = args.target_url
    if args.timeout <= 0:
        raise CliError(f"--timeout: must be > 0, got {args.timeout}", EXIT_CONFIG)
    deadline = time.monotonic() + args.timeout  # bounds every request and the round trip
    target = Target.from_args(args)
    report = _Report(out)
    code = EXIT_FAILED
    steps: list[Callable[[], None]] = []
    with target.client() as client:
        health = _health(client, report, deadline)
        if isinstance(health, int):
            return health
        steps = [lambda: _states(health, report),
                 lambda: _round_trip(client, report, deadline, stop or threading.Event())]
        for step in steps:
            try:
                step()
            except CliError as exc:  # unreachable midway, past --timeout, or an answer of the wrong shape
                fix = ("the server stopped, restarted or answers too slowly: run doctor again, or with a "
                       "longer --timeout" if exc.code == EXIT_UNREACHABLE else _URL_FIX)
                report.fail("answer", safe(exc), fix)
                code = exc.code
                break
    out.write("all checks passed\n" if not report.failed else f"{report.failed} check(s) failed\n")
    return code if report.failed else EXIT_OK
