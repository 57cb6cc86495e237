"""`oglog send`: one entry from the arguments, or one per stdin line, delivered through OgLogHandler.

Each line of stdin is either plain text (the message) or a JSON object in the entry format
(`{"level", "message", "service", "timestamp", "logger", "trace_id", "span_id", "attributes"}`); the
arguments give the defaults. The exit code is 0 only when the SDK reports every entry accepted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import timezone
from typing import Any, TextIO

from .. import wire
from .._entry_struct import MAX_CREATED, MIN_CREATED
from .._handler import OgLogHandler
from .._stats import DROP_REASONS, Stats
from .._timestamp_text import parse_timestamp_text
from ._http import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    REQUEST_DEADLINE,
    CliError,
    Target,
    add_target_flags,
    fetch,
    problem_field,
    problem_line,
    refusal_hint,
)
from ._output import HelpFormatter

__all__ = ["add_parser", "run"]

#: Seconds `send` waits for the SDK to deliver everything before it reports what is still undelivered.
DEFAULT_SEND_TIMEOUT = 15.0
DEFAULT_SERVICE = "oglog-cli"
DEFAULT_LEVEL = "info"
#: The share of the handler's budget (max_buffer_bytes, and max_buffer_records) its records may hold before
#: `send` stops reading stdin until delivery makes room: a file piped in has no reason ever to reach the
#: overflow policy (which drops records), and the half still held keeps the worker sending while `send` waits.
PACE_SHARE = 0.5
#: `send` looks at what the handler holds after this many lines or this many characters read since its last
#: look, whichever comes first: between two looks it adds at most ~1,000 records' charge (~0.7 MB for short
#: lines, ~1.8 MB for 1,000-character ones) or 1 MiB of text plus its records' charge (100 lines of 10,000
#: characters: ~1.1 MB), far below the other half of the budget.
PACE_EVERY = 1000
PACE_CHARS = 1024 * 1024
#: Seconds between two looks while `send` waits for delivery to make room.
PACE_STEP = 0.02
#: The logger name entries carry unless a JSON line names one.
CLI_LOGGER = "oglog.send"

#: The stored level (`wire.LEVELS`) -> the logging level a record gets for it (the SDK maps it back).
_LOGGING_LEVELS = {
    "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR,
    "fatal": logging.CRITICAL,
}
_ENTRY_KEYS = frozenset(
    {"level", "message", "service", "timestamp", "logger", "trace_id", "span_id", "attributes"}
)
# Attribute names LogRecord uses itself: an `extra` under these names would overwrite the record.
_RECORD_KEYS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
# The SDK's stderr lines that `send`'s own summary replaces: a loss announcement (whose advice is about
# handler settings a `send` user cannot change) and the raw answer of a dropped batch.
_REPLACED_DIAG = re.compile(r"^oglogstream: \[[^\]]*\] (lost |dropped \d+ records: )")
# How the SDK's last_error starts when nothing answered (transport failure) or a status refused the batch.
_UNREACHABLE_ERROR = re.compile(r"^(cannot reach |timeout talking to )")
_STATUS_ERROR = re.compile(r"^HTTP (\d{3}) from ")
#: Each loss reason of the SDK (`oglogstream.DROP_REASONS`) in the words of a `send` user, who has entries
#: and a --timeout, not a handler's settings; `{timeout}` is the flag's value. The summary line prints these,
#: never the reason's internal name.
PLAIN_REASONS: Mapping[str, str] = {
    "overflow": "dropped: more than the SDK's buffer could hold",
    "rejected": "rejected by the server, entry by entry",
    "client_error": "refused by the server",
    "too_large": "too large for the server",
    "shutdown": "not delivered before the --timeout {timeout}s deadline",
    "unconfirmed": "sent, but not confirmed before the --timeout {timeout}s deadline (no answer, or a 5xx):"
    " the server may have stored them",
    "internal_error": "could not be encoded (an SDK bug, reported above)",
    "spool_full": DROP_REASONS["spool_full"],
    "spool_expired": DROP_REASONS["spool_expired"],
    "spool_corrupt": DROP_REASONS["spool_corrupt"],
}
#: `shutdown` when nothing answered at all (connection refused, timeouts): the deadline is not the cause.
UNREACHABLE_UNTIL = "server unreachable until the --timeout {timeout}s deadline"


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "send", parents=parents, help="send log entries (arguments or one per stdin line)",
        description="Send one entry from the arguments, or (no MESSAGE) one entry per line of stdin: plain "
        "text, or a JSON object like {\"level\":\"error\",\"message\":\"...\",\"attributes\":{...}}. "
        "Delivered in batches through the SDK; exit 0 only if the server accepted every entry.",
        epilog="examples:  oglog send --level error --service api --attr user=7 'payment failed'\n"
        "           tail -f app.log | oglog send --service app",
        formatter_class=HelpFormatter,
    )
    add_target_flags(parser)
    parser.add_argument("message", nargs="?", help="the message (omit to read stdin)")
    parser.add_argument("--level", default=DEFAULT_LEVEL, help="debug, info, warn, error, fatal "
                        "(default: %(default)s)")
    parser.add_argument("--service", default=None, help=f"service name (default: $OGLOG_SERVICE or "
                        f"{DEFAULT_SERVICE})")
    parser.add_argument("--logger", default=CLI_LOGGER, help="logger name (default: %(default)s)")
    parser.add_argument("--attr", action="append", default=[], metavar="KEY=VALUE",
                        help="an attribute (repeatable); VALUE is kept as text")
    parser.add_argument("--timeout", type=float, default=DEFAULT_SEND_TIMEOUT, metavar="SECONDS",
                        help="how long to wait for delivery before giving up (default: %(default)s)")


def _level(value: object) -> int:
    """The logging level of a stored level's name or alias (`wire.level_name`: any case, as POST /log reads
    it); ValueError naming `level` otherwise."""
    name = wire.level_name(value) if isinstance(value, str) else None
    if name is None:
        raise ValueError(f"level: must be one of {', '.join(wire.LEVELS)} (or an alias), got {value!r}")
    return _LOGGING_LEVELS[name]


def _attributes(pairs: Iterable[str]) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--attr: expected KEY=VALUE, got {pair!r}", EXIT_CONFIG)
        attrs[key] = value
    return attrs


def _timestamp(value: object) -> float:
    if not isinstance(value, str):
        raise ValueError(f"timestamp: must be an RFC 3339 string, got {value!r}")
    # The stack's rule, all of it: offsets up to 23:59, fractions rounded to the µs, no offset = UTC (as the
    # server reads the same line posted to /api/ingest).
    parsed = parse_timestamp_text(value, naive=timezone.utc)
    if parsed is None:
        raise ValueError(f"timestamp: must be an RFC 3339 date-time, got {value!r}")
    if not MIN_CREATED <= parsed <= MAX_CREATED:  # else the SDK would send it with the time of encoding
        raise ValueError(f"timestamp: must be between 1970-01-01 and 2299-12-31 (UTC), got {value!r}")
    return parsed


def build_record(entry: Mapping[str, Any], defaults: argparse.Namespace) -> tuple[str, logging.LogRecord]:
    """(service, LogRecord) for one entry; ValueError naming the field that is wrong."""
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        fields = ", ".join(sorted(_ENTRY_KEYS))
        raise ValueError(f"{unknown[0]}: not a field `oglog send` can set (fields: {fields})")
    message = entry.get("message")
    if not isinstance(message, str) or not message:
        raise ValueError("message: required, a non-empty string")
    level = _level(entry.get("level", defaults.level))
    record = logging.LogRecord(str(entry.get("logger") or defaults.logger), level, "", 0, message, None, None)
    if "timestamp" in entry:
        record.created = _timestamp(entry["timestamp"])
        record.msecs = (record.created % 1) * 1000
    attrs = entry.get("attributes", {})
    if not isinstance(attrs, Mapping):
        raise ValueError("attributes: must be a JSON object")
    for key, value in attrs.items():
        # POST /log refuses others; the SDK would turn a list or object into its Python text, a value nobody
        # can filter on.
        if not wire.is_attribute_value(value):
            raise ValueError(f"attributes.{key}: must be a string, a number or a boolean")
    extra = {**defaults.attributes, **attrs}
    for link in ("trace_id", "span_id"):
        if link in entry:
            extra[link] = entry[link]
    for key, value in extra.items():
        if key in _RECORD_KEYS:
            raise ValueError(f"attributes.{key}: a name the logging record uses itself; rename the attribute")
        setattr(record, key, value)
    service = entry.get("service") or defaults.service
    if not isinstance(service, str):
        raise ValueError("service: must be a string")
    return service, record


def _held(handler: OgLogHandler) -> tuple[int, int, Stats]:
    """(records, bytes, stats) `handler` holds against its budget now: its records not yet sent or dropped,
    and the bytes they are charged: the caller-side intake's charge as callers are admitted by it
    (INTAKE_ITEM_BYTES a record, the weights of mid-size ones, the text of large ones) plus the encoded
    entries buffered and in flight (`Stats.buffered_bytes`), both from one `stats()` snapshot."""
    stats = handler.stats()
    return stats.queued, stats.intake_bytes + stats.buffered_bytes, stats


def _pace(handler: OgLogHandler, timeout: float) -> None:
    """Wait while `handler` holds more than PACE_SHARE of its budget (records or bytes, `_held`), as long as
    delivery makes progress within `timeout`; past that, go on (whatever is then lost is counted and
    reported). Returns at once when it holds less: reading and delivery overlap."""
    settings = handler.settings
    max_records = settings.max_buffer_records * PACE_SHARE
    max_bytes = settings.max_buffer_bytes * PACE_SHARE
    records, held, stats = _held(handler)
    if records <= max_records and held <= max_bytes:
        return
    wait = threading.Event()  # never set: bounded pauses
    progress, since = stats.sent + stats.dropped_total, time.monotonic()
    while (records > max_records or held > max_bytes) and time.monotonic() - since < timeout:
        wait.wait(PACE_STEP)
        records, held, stats = _held(handler)
        if stats.sent + stats.dropped_total != progress:
            progress, since = stats.sent + stats.dropped_total, time.monotonic()


def _entries(message: str | None, stdin: TextIO) -> Iterator[tuple[int, dict[str, Any], int]]:
    """(line number, entry, the line's length in characters); line 0 is the argument."""
    if message is not None:
        yield 0, {"message": message}, len(message)
        return
    for number, line in enumerate(stdin, start=1):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        if text.lstrip().startswith("{"):
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            if isinstance(value, dict):
                yield number, value, len(text)
                continue
        yield number, {"message": text}, len(text)


class _DiagFilter:
    """sys.stderr while `send` delivers: passes the SDK's lines through except those its summary replaces."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        if not _REPLACED_DIAG.match(text):
            self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _plain(reason: str, timeout: float, unreachable: bool) -> str:
    """What happened to entries lost for `reason` (an SDK loss reason), in plain words (`PLAIN_REASONS`);
    `unreachable`: the last error says nothing answered, which is why `shutdown` ones were not delivered."""
    text = UNREACHABLE_UNTIL if reason == "shutdown" and unreachable else PLAIN_REASONS.get(reason, reason)
    return text.format(timeout=f"{timeout:g}")


def _refusal(target: Target, status: int) -> str:
    """One line for a 401/403 that refused every batch: the server's field and reason (asked again with an
    empty body, which stores nothing; the SDK keeps only the start of the body) and the key advice."""
    line, field = f"HTTP {status}", None
    with contextlib.suppress(CliError), target.client() as client:
        response = fetch(client, "POST", "/logs", deadline=time.monotonic() + REQUEST_DEADLINE, content=b"",
                         headers={"Content-Type": "application/x-ndjson"})
        if response.status_code == status:
            line, field = problem_line(response), problem_field(response.content)
    return f"{line} ({refusal_hint(field, 'ingest')})"


def run(args: argparse.Namespace, *, stdin: TextIO = sys.stdin, err: TextIO = sys.stderr) -> int:
    target = Target.from_args(args)
    if args.timeout <= 0:
        raise CliError(f"--timeout: must be > 0, got {args.timeout}", EXIT_CONFIG)
    try:
        _level(args.level)
    except ValueError as exc:
        raise CliError(f"--level: {str(exc).partition(': ')[2]}", EXIT_CONFIG) from None
    args.attributes = _attributes(args.attr)
    args.service = args.service or os.environ.get("OGLOG_SERVICE") or DEFAULT_SERVICE
    if args.message is None and stdin.isatty():
        err.write("oglog send: reading entries from stdin, one per line (Ctrl-D to end)\n")
    handlers: dict[str, OgLogHandler] = {}
    refused = 0
    lines = chars = 0  # read since `send` last looked at what the handler holds (`_pace`)
    real_stderr, sys.stderr = sys.stderr, _DiagFilter(sys.stderr)
    try:
        for number, entry, size in _entries(args.message, stdin):
            try:
                service, record = build_record(entry, args)
                handler = handlers.get(service)
                if handler is None:
                    handler = OgLogHandler(target.url, service, api_key=target.api_key,
                                           shutdown_timeout=args.timeout)
                    handlers[service] = handler
            except ValueError as exc:
                refused += 1
                err.write(f"oglog send: line {number}: {exc}\n" if number else f"oglog send: {exc}\n")
                continue
            handler.handle(record)
            lines += 1
            chars += size
            if lines >= PACE_EVERY or chars >= PACE_CHARS:
                for each in handlers.values():  # lines of several services fill several buffers
                    _pace(each, args.timeout)
                lines = chars = 0
    finally:
        sent = dropped = queued = 0
        reasons: dict[str, int] = {}
        last_error = None
        try:
            for handler in handlers.values():
                handler.close(args.timeout)
                stats = handler.stats()
                sent, dropped = sent + stats.sent, dropped + stats.dropped_total
                queued += stats.queued
                for reason, count in stats.dropped.items():
                    if count:
                        reasons[reason] = reasons.get(reason, 0) + count
                last_error = stats.last_error or last_error
        finally:
            sys.stderr = real_stderr
    total = sent + dropped + queued
    if dropped or queued or refused:
        unreachable = bool(last_error and _UNREACHABLE_ERROR.match(last_error))
        parts = [f"{count} ({_plain(reason, args.timeout, unreachable)})"
                 for reason, count in sorted(reasons.items())]
        if queued:
            parts.append(f"{queued} (still undelivered after --timeout {args.timeout:g}s)")
        if refused:
            parts.append(f"{refused} (invalid, not sent)")
        code = EXIT_FAILED
        status = _STATUS_ERROR.match(last_error or "")
        if status and status.group(1) in ("401", "403"):
            last_error = _refusal(target, int(status.group(1)))
        elif not sent and unreachable:
            code = EXIT_UNREACHABLE
        err.write(f"oglog send: {sent} of {total + refused} entries accepted;"
                  f" not accepted: {', '.join(parts)}"
                  f"{f'; last error: {last_error}' if last_error else ''}\n")
        return code
    if not sent and args.message is None:
        err.write("oglog send: no entries on stdin\n")
    return EXIT_OK
