"""`oglog tail` backs off from a server that accepts and drops it at once, and reads Retry-After as RFC 9110
writes it (review r9): delay-seconds (1*DIGIT) or an HTTP-date, the pause capped at RETRY_AFTER_MAX with
its jitter; anything else leaves the backoff alone. Real local aiohttp servers, `oglog` as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from oglogstream.cli.tail import (
    RECONNECT_INITIAL,
    RECONNECT_MAX,
    RETRY_AFTER_MAX,
    STABLE_AFTER,
    retry_after_seconds,
    retry_delay,
    settled_backoff,
)

from tests.stack.helpers import running_app

from .helpers import start_oglog

pytestmark = pytest.mark.timeout(120)

_PAUSE = re.compile(r"(?:reconnecting|retrying) in ([0-9.]+)s")


@contextlib.asynccontextmanager
async def serving(live: Callable[[web.Request], Any], counts: dict[str, int]) -> AsyncIterator[str]:
    """A real local server: `live` answers /ws/live; /api/logs (the backfill) answers an empty page.
    `counts` gets the requests per path; yields the base URL."""

    async def counted(request: web.Request) -> web.StreamResponse:
        counts[request.path] = counts.get(request.path, 0) + 1
        if request.path == "/api/logs":
            return web.json_response([])
        response: web.StreamResponse = await live(request)
        return response

    app = web.Application()
    app.router.add_get("/ws/live", counted)
    app.router.add_get("/api/logs", counted)
    async with running_app(None, app=app) as url:  # type: ignore[arg-type]
        yield url


async def first_pauses(url: str, count: int, *args: str) -> list[float]:
    """The first `count` pauses (seconds) `oglog tail ARGS` announces on stderr; the tail is then ended."""
    tail = await start_oglog("tail", *args, url=url)
    pauses: list[float] = []
    try:
        assert tail.stderr is not None
        while len(pauses) < count:
            line = (await asyncio.wait_for(tail.stderr.readline(), 30)).decode()
            assert line, f"tail ended (exit {await tail.wait()}) after pauses {pauses}"
            found = _PAUSE.search(line)
            if found:
                pauses.append(float(found.group(1)))
    finally:
        if tail.returncode is None:
            tail.terminate()
        await tail.wait()
    return pauses


async def close_1013(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.close(code=1013, message=b"entries may be missing; reconnect")
    return ws


async def drop_tcp(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    assert request.transport is not None
    request.transport.abort()  # no close frame: the client sees the connection reset
    return ws


class TestBackoffGrowsAgainstAnAcceptThenDropServer:
    @pytest.mark.parametrize(("live", "args"), [(close_1013, ("--backfill",)), (drop_tcp, ())],
                             ids=["1013-with-backfill", "tcp-drop"])
    async def test_the_pauses_double_though_every_handshake_succeeds(
        self, live: Callable[[web.Request], Any], args: tuple[str, ...]
    ) -> None:
        """The reviewer's server took 21 connections in 8 s (all "reconnecting in 0.4s"): each pause is now
        drawn from [backoff/2, backoff] of a backoff doubling from 0.5 s, and --backfill queries once per
        reconnect, not more."""
        counts: dict[str, int] = {}
        async with serving(live, counts) as url:
            pauses = await first_pauses(url, 5, *args)
        for attempt, pause in enumerate(pauses):
            backoff = min(RECONNECT_INITIAL * 2**attempt, RECONNECT_MAX)
            assert round(backoff / 2, 1) - 0.05 <= pause <= backoff, (attempt, pauses)
        assert pauses[-1] >= 4.0  # 0.5 s backoff doubled four times, upper half
        connections = counts["/ws/live"]
        assert connections <= 6, counts  # 5 pauses: at most the 6th connection began
        assert counts.get("/api/logs", 0) <= (connections - 1 if args else 0), counts

    def test_only_a_connection_that_stayed_up_starts_the_backoff_again(self) -> None:
        """A handshake alone keeps the backoff; STABLE_AFTER (the backoff's cap) seconds up resets it."""
        assert STABLE_AFTER == RECONNECT_MAX
        assert settled_backoff(8.0, None) == 8.0  # never opened
        assert settled_backoff(8.0, 0.01) == 8.0  # accepted and closed at once
        assert settled_backoff(8.0, STABLE_AFTER - 0.1) == 8.0
        assert settled_backoff(8.0, STABLE_AFTER) == RECONNECT_INITIAL


@contextlib.asynccontextmanager
async def refusing(retry_after: Callable[[], str]) -> AsyncIterator[str]:
    """A real local server answering every /ws/live upgrade 503 with `Retry-After: retry_after()`."""

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"detail": "not ready"}, status=503, headers={"Retry-After": retry_after()})

    async with serving(live, {}) as url:
        yield url


class TestRetryAfter:
    @pytest.mark.parametrize("header", ["inf", "1e400", "1_0", "1.5", "-5", "+5", " ", "soon"])
    async def test_what_is_no_rfc_9110_retry_after_leaves_the_backoff_alone(self, header: str) -> None:
        """`inf` gave 86.2 s and `1e400` 65.6 s; `1_0` was read as 10 s (float() takes underscores)."""
        async with refusing(lambda: header) as url:
            (pause,) = await first_pauses(url, 1)
        assert 0.2 <= pause <= RECONNECT_INITIAL

    @pytest.mark.parametrize("header", ["99999999", "60", "59", "9" * 5000])
    async def test_a_long_delay_is_capped_after_the_jitter(self, header: str) -> None:
        """`99999999` gave 85.1 s: the jitter multiplied after the cap. Now at most RETRY_AFTER_MAX."""
        async with refusing(lambda: header) as url:
            (pause,) = await first_pauses(url, 1)
        assert pause <= RETRY_AFTER_MAX
        assert pause >= 59.0

    async def test_delay_seconds_are_waited_and_spread_by_up_to_a_half(self) -> None:
        async with refusing(lambda: "10") as url:
            (pause,) = await first_pauses(url, 1)
        assert 10.0 <= pause <= 15.0

    async def test_an_http_date_is_waited_until(self) -> None:
        """The date 20 s ahead (when the server answers): about 20 s, spread by up to a half."""
        async with refusing(lambda: email.utils.formatdate(time.time() + 20, usegmt=True)) as url:
            (pause,) = await first_pauses(url, 1)
        assert 18.0 <= pause <= 30.0

    async def test_an_http_date_gone_by_or_far_ahead(self) -> None:
        """A past date: the backoff alone; a date a day ahead: RETRY_AFTER_MAX."""
        async with refusing(lambda: "Sun, 06 Nov 1994 08:49:37 GMT") as url:
            (past,) = await first_pauses(url, 1)
        async with refusing(lambda: email.utils.formatdate(time.time() + 86400, usegmt=True)) as url:
            (ahead,) = await first_pauses(url, 1)
        assert 0.2 <= past <= RECONNECT_INITIAL
        assert ahead == RETRY_AFTER_MAX

    def test_the_rule_by_value(self) -> None:
        """retry_after_seconds/retry_delay at fixed `now` and the largest jitter draw (0.999)."""
        now = 1_800_000_000.0
        assert retry_after_seconds("0007", now) == 7.0
        assert retry_after_seconds("0" * 5000 + "5", now) == 5.0
        assert retry_after_seconds(email.utils.formatdate(now + 30, usegmt=True), now) == 30.0
        assert retry_after_seconds("Sat, 16 Jan 2027 08:00:00 -0000", now) == RETRY_AFTER_MAX
        for unreadable in (None, "", "inf", "nan", "1e400", "1_0", "0x10", "\u0661\u0660"):
            assert retry_after_seconds(unreadable, now) is None
        assert retry_delay(RECONNECT_INITIAL, "59", draw=0.999, now=now) == RETRY_AFTER_MAX
        assert retry_delay(RECONNECT_INITIAL, "10", draw=0.999, now=now) == 15.0
        assert retry_delay(RECONNECT_MAX, "1", draw=0.0, now=now) == RECONNECT_MAX / 2  # never below backoff


def test_a_library_error_in_the_opening_handshake_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """websockets' own error while opening (in CI: an AssertionError inside its handshake, raced by its
    reading thread's broken pipe against a server answering garbage; injected here at the client boundary)
    ends `oglog tail` with the one-line "unexpected answer" error, not a traceback."""
    import io

    import websockets.sync.client
    from oglogstream.cli import build_parser
    from oglogstream.cli._http import EXIT_FAILED, CliError
    from oglogstream.cli.tail import run

    def broken_connect(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError  # as `assert self.close_deadline is None` in websockets' send_context

    monkeypatch.setattr(websockets.sync.client, "connect", broken_connect)
    args = build_parser().parse_args(["tail", "--url", "http://127.0.0.1:9"])
    with pytest.raises(CliError) as raised:
        run(args, out=io.StringIO(), err=io.StringIO())
    assert raised.value.code == EXIT_FAILED
    assert "unexpected answer" in str(raised.value) and "(AssertionError)" in str(raised.value)


def test_what_websockets_logs_while_opening_stays_off_the_terminal(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """websockets logs its reading thread's "unexpected internal error" with a traceback (CI, a garbage
    answer); logging's last-resort handler printed it before tail's one line. Injected at the client
    boundary: the logger tail hands websockets prints nothing."""
    import io

    import websockets.sync.client
    from oglogstream.cli import build_parser
    from oglogstream.cli._http import CliError
    from oglogstream.cli.tail import run

    def logging_connect(*args: Any, logger: Any = None, **kwargs: Any) -> Any:
        try:
            raise BrokenPipeError(32, "Broken pipe")
        except BrokenPipeError:
            log = logger or logging.getLogger("websockets.client")
            log.error("unexpected internal error", exc_info=True)
        raise AssertionError

    monkeypatch.setattr(websockets.sync.client, "connect", logging_connect)
    monkeypatch.setattr(logging.root, "handlers", [])  # as in `oglog tail`: no handlers (pytest adds its own)
    args = build_parser().parse_args(["tail", "--url", "http://127.0.0.1:9"])
    with pytest.raises(CliError):
        run(args, out=io.StringIO(), err=io.StringIO())
    assert "Traceback" not in capfd.readouterr().err
