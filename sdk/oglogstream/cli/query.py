"""`oglog query`: entries from `/api/logs`, newest first, following `X-Next-Cursor` up to `--limit`."""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO

from . import _shapes
from ._filters import add_filter_flags, filter_params
from ._http import (
    EXIT_CONFIG,
    EXIT_OK,
    MAX_PAGE,
    REQUEST_DEADLINE,
    CliError,
    Target,
    add_target_flags,
    request_json,
)
from ._output import HelpFormatter, colour_enabled, entry_line, print_json

__all__ = ["add_deadline_flag", "add_parser", "parse_since", "run"]

DEFAULT_LIMIT = 100
_SINCE = re.compile(r"^(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "query", parents=parents, help="search stored entries (table, or --json for scripts)",
        description="Search stored entries, newest first (GET /api/logs). Pages are followed until --limit "
        "entries are printed.",
        epilog="examples:  oglog query --level error --since 15m\n"
        "           oglog query --service api -q 'timeout' --attr user=7 --limit 500 --json",
        formatter_class=HelpFormatter,
    )
    add_target_flags(parser)
    add_filter_flags(parser)
    parser.add_argument("--since", default=None, metavar="DURATION",
                        help="only the last 30s / 15m / 2h / 7d (instead of --from)")
    parser.add_argument("--from", dest="start", default=None, metavar="TIME",
                        help="RFC 3339 start, inclusive: 2026-11-27T10:00:00Z")
    parser.add_argument("--to", dest="end", default=None, metavar="TIME", help="RFC 3339 end, exclusive")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, metavar="N",
                        help="at most N entries, over as many pages as needed (default: %(default)s)")
    parser.add_argument("--page-size", type=int, default=MAX_PAGE, metavar="N",
                        help="entries per request, 1..1000 (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="NDJSON: one entry (API shape) per line")
    add_deadline_flag(parser)


def add_deadline_flag(parser: argparse.ArgumentParser) -> None:
    """--timeout: the total deadline of each request (connect, headers and the whole body)."""
    parser.add_argument("--timeout", type=float, default=REQUEST_DEADLINE, metavar="SECONDS",
                        help="longest one request may take in all, answer included (default: %(default)s)")


def check_timeout(args: argparse.Namespace) -> None:
    """CliError (exit 2) for a --timeout that is not > 0."""
    if not args.timeout > 0:
        raise CliError(f"--timeout: must be > 0, got {args.timeout}", EXIT_CONFIG)


def parse_since(text: str) -> timedelta:
    """`15m` -> 15 minutes (units s, m, h, d, w); ValueError otherwise."""
    match = _SINCE.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"--since: expected a duration like 30s, 15m, 2h or 7d, got {text!r}")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def _rfc3339(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def time_params(args: argparse.Namespace) -> list[tuple[str, str]]:
    """from/to from --since or --from/--to (passed as given: the server validates RFC 3339)."""
    if args.since and args.start:
        raise CliError("--since and --from: give one of them", EXIT_CONFIG)
    params: list[tuple[str, str]] = []
    if args.since:
        try:
            params.append(("from", _rfc3339(datetime.now(timezone.utc) - parse_since(args.since))))
        except ValueError as exc:
            raise CliError(str(exc), EXIT_CONFIG) from None
    elif args.start:
        params.append(("from", args.start))
    if args.end:
        params.append(("to", args.end))
    return params


def run(args: argparse.Namespace, *, out: TextIO = sys.stdout) -> int:
    check_timeout(args)
    target = Target.from_args(args)
    if args.limit < 1:
        raise CliError(f"--limit: must be >= 1, got {args.limit}", EXIT_CONFIG)
    if not 1 <= args.page_size <= MAX_PAGE:
        raise CliError(f"--page-size: must be 1..{MAX_PAGE}, got {args.page_size}", EXIT_CONFIG)
    params = filter_params(args) + time_params(args)
    colour = not args.json and colour_enabled(out)
    printed = 0
    cursor: str | None = None
    with target.client() as client:
        while printed < args.limit:
            page = min(args.page_size, args.limit - printed)
            query = [*params, ("limit", str(page))] + ([("cursor", cursor)] if cursor else [])
            response, entries = request_json(client, "GET", "/api/logs", params=query, shape=_shapes.entries,
                                             deadline=time.monotonic() + target.deadline)
            entries = entries[:page]  # a server sending more than asked for does not stretch --limit
            for entry in entries:
                if args.json:
                    print_json(entry, out)
                else:
                    out.write(entry_line(entry, colour=colour) + "\n")
            printed += len(entries)
            cursor = response.headers.get("X-Next-Cursor")
            if not cursor or len(entries) < page:
                break
    if not args.json and not printed:
        sys.stderr.write("oglog query: no entries match\n")
    return EXIT_OK
