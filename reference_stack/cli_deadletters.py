"""`oglog dead-letters list|replay|discard`: the dead-letter API of a running stack, from a terminal.

    oglog dead-letters list    [--url http://127.0.0.1:8080] [--after SEQ] [--limit N] [--json]
    oglog dead-letters replay  [--url http://127.0.0.1:8080] (--all | SEQ [SEQ ...])
    oglog dead-letters discard [--url http://127.0.0.1:8080] SEQ [SEQ ...]

Talks to GET /api/dead-letters, POST /api/dead-letters/replay and POST /api/dead-letters/discard of the query
role (see deadletter.py),
with `Authorization: Bearer $OGLOG_API_KEY` when that is set (never a flag: a command line is visible to all).
Exit status: 0 done, 1 the stack could not be reached or refused the request (the reason on stderr), 2 bad
arguments, 3 a replay or discard left some dead letters in place (listed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any, TextIO

__all__ = ["DEFAULT_URL", "EXIT_PARTIAL", "REQUEST_TIMEOUT", "add_parser", "run"]

DEFAULT_URL = "http://127.0.0.1:8080"
#: Seconds one API call may take (a replay of MAX_REPLAY dead letters is ~1,000 JetStream round trips).
REQUEST_TIMEOUT = 60.0
EXIT_USAGE = 2
EXIT_PARTIAL = 3
_ERROR_WIDTH = 100


class ApiError(RuntimeError):
    """The stack could not be reached or answered with an error: one line for stderr."""


def add_parser(commands: Any) -> None:
    """Add `dead-letters` to the `oglog` subcommands."""
    parser = commands.add_parser(
        "dead-letters",
        help="list, replay or discard what the processor could not store (GET /api/dead-letters)",
        description="List, replay or discard dead letters of a running stack through its query API. "
        "With auth on, the key comes from OGLOG_API_KEY: listing needs the query scope, replay and "
        "discard admin.",
    )
    actions = parser.add_subparsers(dest="dead_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="one page of dead letters, oldest first")
    replay = actions.add_parser("replay", help="re-publish dead letters to the logs stream and delete them")
    discard = actions.add_parser("discard", help="delete dead letters for good (they are not stored)")
    for sub in (listing, replay, discard):
        sub.add_argument("--url", default=DEFAULT_URL, help="the stack's base URL (default: %(default)s)")
    listing.add_argument("--after", type=int, default=0, metavar="SEQ", help="start after this sequence")
    listing.add_argument("--limit", type=int, default=50, metavar="N", help="page size (default: 50)")
    listing.add_argument("--json", action="store_true", help="print the API's JSON answer as is")
    replay.add_argument("--all", action="store_true", help="replay the oldest 1,000 (run again for more)")
    replay.add_argument("seqs", nargs="*", type=int, default=[], metavar="SEQ", help="dead-letter sequences")
    discard.add_argument("seqs", nargs="+", type=int, metavar="SEQ", help="dead-letter sequences")


def _call(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    key = os.environ.get("OGLOG_API_KEY")  # with auth on: list needs `query`, replay `admin` (security.md)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail", exc.reason)
        except ValueError:
            detail = exc.reason
        raise ApiError(f"{method} {url}: {exc.code} {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(f"{method} {url}: cannot reach the stack ({reason})") from None


def _print_page(page: dict[str, Any], out: TextIO) -> None:
    items = page["dead_letters"]
    print(f"{page['total']} dead letter(s)", file=out)
    if items:
        header = f"{'SEQ':>8}  {'TIME':<27}  {'REASON':<11} {'ROWS':<11} {'ORIGINAL MSG ID':<20}  ERROR"
        print(header, file=out)
    for item in items:
        rows = "?" if item["rows"] is None else item["rows"]
        error = item["error"][:_ERROR_WIDTH]
        print(
            f"{item['seq']:>8}  {item['time'] or '-':<27}  {item['reason']:<11} rows={rows:<6} "
            f"{item['original_msg_id'] or '-':<20}  {error}",
            file=out,
        )
    if page["next_after"] is not None:
        print(f"more: oglog dead-letters list --after {page['next_after']}", file=out)


def _usage(message: str) -> int:
    print(f"oglog: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run `oglog dead-letters ...`; returns the exit status. Raises ApiError (exit 1 in cli.main)."""
    base = args.url.rstrip("/")
    if args.dead_command == "list":
        if args.limit < 1 or args.after < 0:
            return _usage("--limit must be >= 1 and --after >= 0")
        page = _call("GET", f"{base}/api/dead-letters?after={args.after}&limit={args.limit}")
        if args.json:
            print(json.dumps(page, indent=2), file=out)
        else:
            _print_page(page, out)
        return 0
    if any(seq < 1 for seq in args.seqs):
        return _usage(f"{args.dead_command}: SEQ must be >= 1")
    if args.dead_command == "discard":
        result = _call("POST", f"{base}/api/dead-letters/discard", {"seqs": args.seqs})
        return _print_outcome(result, "discarded", out)
    if args.all == bool(args.seqs):
        return _usage("replay: give either --all or one or more SEQ")
    body: dict[str, Any] = {"all": True} if args.all else {"seqs": args.seqs}
    result = _call("POST", f"{base}/api/dead-letters/replay", body)
    if args.all and not result["replayed"] and not result["failed"]:
        print("nothing to replay: no dead letters are waiting", file=out)
        return 0
    return _print_outcome(result, "replayed", out)


def _print_outcome(result: dict[str, Any], done: str, out: TextIO) -> int:
    """`<done> N: SEQ ...`, then one line per dead letter left in place; the exit status."""
    print(f"{done} {len(result[done])}: {' '.join(map(str, result[done])) or '-'}", file=out)
    for failure in result["failed"]:
        print(f"not {done} {failure['seq']}: {failure['error']}", file=out)
    return EXIT_PARTIAL if result["failed"] else 0
