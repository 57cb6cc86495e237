"""`oglog tail`: the live tail (`/ws/live`) in the terminal; reconnects by itself.

The WebSocket client is `websockets`' synchronous client (pure Python, no dependencies of its own), imported
only here, so `import oglogstream` does not load it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.utils
import logging
import random
import re
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO
from urllib.parse import urlencode

from . import _shapes
from ._backfill import BACKFILL_MAX, Seen, backfill, query_command
from ._filters import add_filter_flags, filter_params
from ._http import (
    DEFAULT_URL,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    MAX_ERROR_BODY_BYTES,
    CliError,
    Target,
    UnexpectedAnswer,
    add_target_flags,
    decode_json,
    refusal_hint,
)
from ._output import HelpFormatter, OutputClosed, colour_enabled, entry_line, print_json, safe

__all__ = ["add_parser", "run"]

#: First and longest backoff (seconds) between reconnection attempts; doubled after each failure.
RECONNECT_INITIAL = 0.5
RECONNECT_MAX = 10.0
#: Seconds a connection must stay open before its loss starts the backoff again from RECONNECT_INITIAL. A
#: completed handshake proves nothing: a server that accepts and closes at once (1013, a TCP drop) would
#: otherwise be hit every 0.5 s for ever, and with --backfill queried as often. The backoff's cap: a tail
#: that was up that long has waited at least as long as the longest pause.
STABLE_AFTER = RECONNECT_MAX
#: Seconds to open the WebSocket (TCP + upgrade, redirects included): websockets bounds the whole handshake.
OPEN_TIMEOUT = 10.0
#: Largest live-tail message (bytes): one entry, far below this.
MAX_MESSAGE_BYTES = 2**22
#: Close codes after which reconnecting cannot help: policy violation (revoked key / scope).
_FINAL_CLOSE_CODES = frozenset({1008})
#: Upgrade answers that mean "not now" (not ready, shutting down, too many live clients, this client's or
#: key's share taken, a worker's relay cut off from the supervisor): tail waits and tries again, before its
#: first connection too (a stack still starting answers 503). Every other status ends it: a 400 is a bad
#: filter, 401/403 a key problem, 404 a wrong --url - retrying cannot fix those.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: websockets' logger for our connections: what it logs (an "unexpected internal error" with its traceback,
#: printed by logging's last-resort handler, when a garbage answer races its reading thread: seen in CI) is
#: not for the terminal, where tail says what happened in one line.
_WEBSOCKETS_LOG = logging.getLogger("oglogstream.cli.tail.websockets")
_WEBSOCKETS_LOG.propagate = False
_WEBSOCKETS_LOG.addHandler(logging.NullHandler())
#: Longest pause (seconds) a Retry-After gets, jitter included; a larger one (or a later HTTP date) is cut
#: to this.
RETRY_AFTER_MAX = 60.0
#: RFC 9110 section 10.2.3 delay-seconds: 1*DIGIT, nothing else (no sign, fraction, exponent, `inf`, `1_0`).
_DELAY_SECONDS = re.compile(r"[0-9]+", re.ASCII)


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "tail", parents=parents, help="follow new entries as they arrive (live tail)",
        description="Print entries as ingestion accepts them (GET /ws/live). Filters as for `oglog query`. "
        "Reconnects by itself with backoff when the connection drops (said on stderr). Ctrl-C to stop.",
        epilog="examples:  oglog tail --level error,fatal\n"
        "           oglog tail --service api --json | jq .message",
        formatter_class=HelpFormatter,
    )
    add_target_flags(parser)
    add_filter_flags(parser)
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("-n", "--count", type=int, default=0, metavar="N",
                        help="exit after N entries (default: follow until Ctrl-C)")
    parser.add_argument("--backfill", action="store_true",
                        help="after a reconnect, print the gap's stored entries from /api/logs (each once, "
                        f"at most {BACKFILL_MAX:,}; those not stored yet are missed, and said to be)")


def _ws_url(target: Target, params: list[tuple[str, Any]]) -> str:
    base = "ws" + target.url.removeprefix("http")  # http -> ws, https -> wss
    query = urlencode(params)
    return f"{base}/ws/live" + (f"?{query}" if query else "")


def _handshake_error(exc: Any, base: str) -> CliError:
    response = exc.response
    status = int(response.status_code)
    try:
        body = decode_json(bytes(response.body or b"")[:MAX_ERROR_BODY_BYTES])
    except UnexpectedAnswer:
        body = None
    reason = ""
    if isinstance(body, dict):
        field, why = body.get("field"), body.get("reason") or body.get("detail")
        reason = f"{field}: {why}" if field and why else str(why or "")
    line = f"HTTP {status}: {reason[:400] or response.reason_phrase}"
    if status in (401, 403):
        field = body.get("field") if isinstance(body, dict) else None
        return CliError(f"{line} ({refusal_hint(field, 'query')})")
    if status == 404:
        line += f" (is {base} the stack's base URL, like {DEFAULT_URL}?)"
    return CliError(line, EXIT_CONFIG if status == 400 else EXIT_FAILED)


def reconnect_delay(backoff: float, draw: float | None = None) -> float:
    """The pause (seconds) before the next attempt: "equal jitter", uniform in [backoff/2, backoff].

    Every client of a hub is closed at once (1013 after a NATS reconnect, a restart): without jitter they
    would all come back in the same instant, and again at each doubling. `draw` is a number in [0, 1) (tests);
    rounded to 0.1 s for the stderr line. The dashboard uses the same rule (dashboard/live.js)."""
    fraction = random.random() if draw is None else draw
    return round(backoff / 2 + fraction * backoff / 2, 1)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header as seconds to wait, in [0, RETRY_AFTER_MAX]; None when it is missing or neither
    RFC 9110 form: delay-seconds (1*DIGIT) or an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`; the seconds
    from `now`, time.time() by default, to it; 0 for a date gone by)."""
    text = (value or "").strip()
    if _DELAY_SECONDS.fullmatch(text):
        digits = text.lstrip("0") or "0"  # by length first: int() refuses 4,301 digits; 4 are past the cap
        return RETRY_AFTER_MAX if len(digits) > 3 else min(float(digits), RETRY_AFTER_MAX)
    if not text or text[0].isdigit():  # `1_0`, `1e400`, `1.5`: no form of Retry-After
        return None
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # `-0000`: RFC 5322's "UTC, zone unknown"; HTTP-dates are GMT
        moment = moment.replace(tzinfo=dt.timezone.utc)
    wait = moment.timestamp() - (time.time() if now is None else now)
    return min(max(wait, 0.0), RETRY_AFTER_MAX)


def retry_delay(backoff: float, retry_after: str | None, draw: float | None = None,
                now: float | None = None) -> float:
    """The pause (seconds) after a RETRY_STATUSES answer: its Retry-After (`retry_after_seconds`) spread by
    up to a half more, so a hub's refused clients do not all return in one instant, then cut to
    RETRY_AFTER_MAX; at least `reconnect_delay(backoff, draw)` (a missing or unreadable Retry-After leaves
    just that). `draw` in [0, 1) and `now` (time.time()) for tests."""
    fraction = random.random() if draw is None else draw
    after = retry_after_seconds(retry_after, now) or 0.0
    spread = min(round(after * (1 + fraction / 2), 1), RETRY_AFTER_MAX)
    return max(reconnect_delay(backoff, fraction), spread)


def settled_backoff(backoff: float, up_for: float | None) -> float:
    """The backoff after a connection lost: RECONNECT_INITIAL when it had stayed open `up_for` >=
    STABLE_AFTER seconds, else `backoff` as it was (None: it never opened)."""
    return RECONNECT_INITIAL if up_for is not None and up_for >= STABLE_AFTER else backoff


def gap_span(since: float, until: float) -> tuple[str, str]:
    """RFC 3339 UTC of `since` and `until` (time.time() seconds), widened outwards to whole seconds."""
    start, end = (dt.datetime.fromtimestamp(t, dt.timezone.utc) for t in (since, until))
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return (start - dt.timedelta(seconds=1)).strftime(fmt), (end + dt.timedelta(seconds=1)).strftime(fmt)


def filter_flags(args: argparse.Namespace) -> list[str]:
    """The tail's filter flags as given (`oglog query` takes the same ones: `_filters.add_filter_flags`),
    e.g. ["--service", "api", "--level", "error"]."""
    flags: list[str] = []
    for name, values in (("--service", args.service), ("--level", args.level), ("--attr", args.attr),
                         ("--param", args.param)):
        for value in values:
            flags += [name, value]
    if args.q:
        flags += ["-q", args.q]
    return flags


def gap_notice(since: float, until: float, flags: Sequence[str] = ()) -> str:
    """The stderr line after a reconnect: the live tail is not replayed, so say which span (UTC, wall clock:
    `since` the last entry received or the connection lost, `until` the reconnect, both time.time()) may
    miss entries and how to see them: the `oglog query` command with the tail's own filter `flags`
    (`filter_flags`), shell-quoted, so it selects what the tail would have shown (they are stored; `oglog
    query` selects by entry time). Terminal-safe (control characters escaped)."""
    first, last = gap_span(since, until)
    return (f"oglog tail: reconnected; entries accepted in the {until - since:.1f}s between {first} and "
            f"{last} were not replayed (they are stored: {query_command(flags, first, last)})\n")


def _emit(message: Any, out: TextIO, *, as_json: bool, colour: bool) -> None:
    """Print one entry now; OutputClosed when the reader of `out` is gone (that ends tail, not reconnects)."""
    try:
        if as_json:
            print_json(message, out)
        else:
            out.write(entry_line(message, colour=colour) + "\n")
        out.flush()
    except BrokenPipeError:
        raise OutputClosed from None


def run(args: argparse.Namespace, *, out: TextIO = sys.stdout, err: TextIO = sys.stderr,
        stop: threading.Event | None = None) -> int:
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
    from websockets.sync.client import connect

    target = Target.from_args(args)
    if args.count < 0:
        raise CliError(f"--count: must be >= 0, got {args.count}", EXIT_CONFIG)
    url = _ws_url(target, filter_params(args))
    colour = not args.json and colour_enabled(out)
    stop = stop or threading.Event()
    received = 0
    backoff = RECONNECT_INITIAL
    connected_once = False
    last_seen = 0.0  # time.time() of the last message received, or of the (re)connection
    seen = Seen() if args.backfill else None  # entries printed, so none is printed twice
    last_stamp: str | None = None  # `timestamp` of the last entry printed (where a backfill starts)

    def show(entry: dict[str, Any]) -> None:
        nonlocal received, last_stamp
        _emit(entry, out, as_json=args.json, colour=colour)
        received += 1
        stamp = entry.get("timestamp")
        last_stamp = stamp if isinstance(stamp, str) else last_stamp

    while not stop.is_set():
        opened: float | None = None  # time.monotonic() when this attempt's socket opened
        try:
            with connect(url, additional_headers=target.headers, open_timeout=OPEN_TIMEOUT,
                         max_size=MAX_MESSAGE_BYTES, logger=_WEBSOCKETS_LOG) as socket:
                opened = time.monotonic()
                now = time.time()
                if connected_once:
                    err.write(gap_notice(last_seen, now, filter_flags(args)))
                    if seen is not None:  # the socket is open: what arrives from now on is live
                        first, last = gap_span(last_seen, now)
                        backfill(target, filter_params(args), last_stamp or first, last, seen, show, err,
                                 filter_flags(args))
                    err.flush()
                    if args.count and received >= args.count:
                        return EXIT_OK
                connected_once, last_seen = True, now
                while not stop.is_set():
                    try:
                        text = socket.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    last_seen = time.time()
                    try:
                        message = _shapes.live_message(decode_json(text))
                    except UnexpectedAnswer as exc:
                        raise CliError(f"unexpected answer from {url}: {exc}") from None
                    if message.get("type") == "dropped":
                        missed = safe(message.get("count"))
                        err.write(f"oglog tail: missed {missed} entries (output too slow)\n")
                        continue
                    if seen is not None and not seen.add(message):
                        continue  # printed by a backfill already
                    show(message)
                    if args.count and received >= args.count:
                        return EXIT_OK
        except InvalidStatus as exc:
            error = _handshake_error(exc, target.url)
            if int(exc.response.status_code) not in RETRY_STATUSES:
                raise error from None
            pause = retry_delay(backoff, exc.response.headers.get("Retry-After"))
            err.write(f"oglog tail: {safe(str(error))}; retrying in {pause:g}s\n")
        except InvalidURI as exc:
            if exc.uri != url:  # a redirect's Location, not --url
                raise CliError(f"unexpected answer from {url}: a redirect to {exc.uri!r}") from None
            raise CliError(f"--url: {exc}", EXIT_CONFIG) from None
        except InvalidHandshake as exc:  # a redirect loop, an answer that is not a WebSocket upgrade, ...
            raise CliError(f"unexpected answer from {url}: {exc or type(exc).__name__}") from None
        except ConnectionClosed as exc:
            backoff = settled_backoff(backoff, None if opened is None else time.monotonic() - opened)
            pause = reconnect_delay(backoff)
            code = exc.rcvd.code if exc.rcvd is not None else None
            if code in _FINAL_CLOSE_CODES:
                raise CliError(f"the server closed the live tail: {exc.rcvd.reason or code}"  # type: ignore[union-attr]
                               ) from None
            if exc.rcvd is not None and exc.rcvd.reason:  # 1013: "... entries may be missing; reconnect"
                err.write(f"oglog tail: the server said: {safe(exc.rcvd.reason)}\n")
            err.write(f"oglog tail: connection closed ({code or 'no close frame'}); "
                      f"reconnecting in {pause:g}s\n")
        except OSError as exc:  # TimeoutError included; a closed stdout is OutputClosed, never caught here
            backoff = settled_backoff(backoff, None if opened is None else time.monotonic() - opened)
            pause = reconnect_delay(backoff)
            err.write(f"oglog tail: cannot reach {target.url} ({exc or type(exc).__name__}); "
                      f"reconnecting in {pause:g}s\n")
        except Exception as exc:
            if opened is not None:  # our own code's errors (CliError, a closed stdout) pass untouched
                raise
            # Only `connect()` runs before `opened`: websockets' own error in the opening handshake (seen in
            # CI: a server answering garbage, its reading thread's broken pipe raced the handshake into an
            # AssertionError inside websockets) is an answer we cannot use, said in one line.
            raise CliError(f"unexpected answer from {url}: the WebSocket handshake failed"
                           f" ({type(exc).__name__})") from None
        err.flush()
        stop.wait(pause)
        backoff = min(backoff * 2, RECONNECT_MAX)
    return EXIT_OK
