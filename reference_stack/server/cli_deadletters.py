"""`oglog dead-letters list|replay|discard`: the dead-letter API of a running stack, from a terminal.

    oglog dead-letters list    [--url URL] [--after SEQ] [--limit N] [--json]
    oglog dead-letters replay  [--url URL] (--all | SEQ [SEQ ...])
    oglog dead-letters discard [--url URL] SEQ [SEQ ...]

`--url` defaults to $OGLOG_URL, else http://127.0.0.1:8080, as for the client commands. Talks to
GET /api/dead-letters, POST /api/dead-letters/replay and POST /api/dead-letters/discard of the query role
(see deadletter.py), with `Authorization: Bearer $OGLOG_API_KEY` when that is set (never a flag: a command
line is visible to all).
Each call is bounded like the client commands' requests (oglogstream.cli._http.fetch: REQUEST_TIMEOUT in all,
the body capped) and its answer's shape is checked before anything is printed (the TypedDicts below).
Exit status: 0 done, 1 the stack could not be reached, refused the request or answered something else than
the API's shape (one line on stderr), 2 bad arguments, 3 a replay or discard left some dead letters in place
(listed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

import pydantic
from oglogstream.cli._http import (
    DEFAULT_URL,
    ENV_URL,
    CliError,
    Target,
    UnexpectedAnswer,
    decode_json,
    fetch,
    problem_line,
)
from oglogstream.cli._output import safe
from typing_extensions import TypedDict

__all__ = ["DEFAULT_URL", "EXIT_PARTIAL", "REQUEST_TIMEOUT", "add_parser", "run"]

#: Seconds one API call may take in all, answer included (a replay of MAX_REPLAY dead letters is ~1,000
#: JetStream round trips).
REQUEST_TIMEOUT = 60.0
EXIT_USAGE = 2
EXIT_PARTIAL = 3
_ERROR_WIDTH = 100


class ApiError(RuntimeError):
    """The stack could not be reached or answered with an error: one line for stderr."""


class _DeadLetter(TypedDict):
    seq: int
    time: str | None
    reason: str
    rows: int | None
    original_msg_id: str
    error: str


class _Page(TypedDict):
    dead_letters: list[_DeadLetter]
    next_after: int | None
    total: int


class _Failure(TypedDict):
    seq: int
    error: str


class _Replayed(TypedDict):
    replayed: list[int]
    failed: list[_Failure]


class _Discarded(TypedDict):
    discarded: list[int]
    failed: list[_Failure]


# What each action prints from, checked before printing (the answers of deadletter.py's routes); any other
# 2xx body is "unexpected answer", exit 1. Extra keys are allowed (the routes may add some).
_PAGE = pydantic.TypeAdapter(_Page)
_OUTCOMES: dict[str, pydantic.TypeAdapter[Any]] = {
    "replayed": pydantic.TypeAdapter(_Replayed), "discarded": pydantic.TypeAdapter(_Discarded)}


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
        sub.add_argument(
            "--url", default=None, help=f"the stack's base URL (default: ${ENV_URL} or {DEFAULT_URL})"
        )
    listing.add_argument("--after", type=int, default=0, metavar="SEQ", help="start after this sequence")
    listing.add_argument("--limit", type=int, default=50, metavar="N", help="page size (default: 50)")
    listing.add_argument("--json", action="store_true", help="print the API's JSON answer as is")
    replay.add_argument("--all", action="store_true", help="replay the oldest 1,000 (run again for more)")
    replay.add_argument("seqs", nargs="*", type=int, default=[], metavar="SEQ", help="dead-letter sequences")
    discard.add_argument("seqs", nargs="+", type=int, metavar="SEQ", help="dead-letter sequences")


def _call(method: str, target: Target, path: str, shape: pydantic.TypeAdapter[Any], body: Any = None) -> Any:
    """The JSON answer of one API call as sent (`--json` prints it whole), once `shape` accepted it; ApiError
    (one line) for anything else.
    The request is bounded like every `oglog` client request: REQUEST_TIMEOUT in all, the body capped."""
    url = f"{target.url}{path}"
    try:
        with target.client() as client:
            answer = fetch(client, method, path, deadline=time.monotonic() + target.deadline,
                           **({} if body is None else {"json": body}))
    except CliError as exc:  # unreachable, past the deadline, or too large: the reason is in the message
        raise ApiError(f"{method} {url}: {safe(exc)}") from None
    if not 200 <= answer.status_code < 300:
        raise ApiError(f"{method} {url}: {problem_line(answer)}")
    try:
        value = decode_json(answer.content)
        shape.validate_python(value)
    except UnexpectedAnswer as exc:
        raise ApiError(f"{method} {url}: unexpected answer: {exc} (is --url the stack's base URL?)") from None
    except pydantic.ValidationError as exc:
        raise ApiError(f"{method} {url}: unexpected answer: {_first_problem(exc)} "
                       "(is --url the stack's base URL?)") from None
    return value


def _first_problem(exc: pydantic.ValidationError) -> str:
    """The first problem pydantic found, on one short terminal-safe line: `dead_letters.0.seq: ...`."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the body"
    return safe(f"{where}: {first['msg']}"[:160])


def _print_page(page: _Page, out: TextIO) -> None:
    """The page as a table; every text from the server terminal-safe (it can quote log data)."""
    items = page["dead_letters"]
    print(f"{page['total']} dead letter(s)", file=out)
    if items:
        header = f"{'SEQ':>8}  {'TIME':<27}  {'REASON':<11} {'ROWS':<11} {'ORIGINAL MSG ID':<20}  ERROR"
        print(header, file=out)
    for item in items:
        rows = "?" if item["rows"] is None else item["rows"]
        error = safe(item["error"][:_ERROR_WIDTH])
        print(
            f"{item['seq']:>8}  {safe(item['time'] or '-'):<27}  {safe(item['reason']):<11} rows={rows:<6} "
            f"{safe(item['original_msg_id'] or '-'):<20}  {error}",
            file=out,
        )
    if page["next_after"] is not None:
        print(f"more: oglog dead-letters list --after {page['next_after']}", file=out)


def _usage(message: str) -> int:
    print(f"oglog: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run `oglog dead-letters ...`; returns the exit status. Raises ApiError (exit 1 in cli.main)."""
    try:  # the client commands' URL rule: one line and exit 2 for a URL that cannot be used
        # The key from OGLOG_API_KEY only: with auth on, list needs `query`, replay `admin` (security.md);
        # never a flag, a command line is visible to all.
        target = Target.from_args(argparse.Namespace(url=args.url, api_key=None, timeout=REQUEST_TIMEOUT))
    except CliError as exc:
        return _usage(str(exc))
    if args.dead_command == "list":
        if args.limit < 1 or args.after < 0:
            return _usage("--limit must be >= 1 and --after >= 0")
        page = _call("GET", target, f"/api/dead-letters?after={args.after}&limit={args.limit}", _PAGE)
        if args.json:
            print(json.dumps(page, indent=2), file=out)
        else:
            _print_page(page, out)
        return 0
    if any(seq < 1 for seq in args.seqs):
        return _usage(f"{args.dead_command}: SEQ must be >= 1")
    if args.dead_command == "discard":
        chosen = {"seqs": args.seqs}
        result = _call("POST", target, "/api/dead-letters/discard", _OUTCOMES["discarded"], chosen)
        return _print_outcome(result, "discarded", out)
    if args.all == bool(args.seqs):
        return _usage("replay: give either --all or one or more SEQ")
    body: dict[str, Any] = {"all": True} if args.all else {"seqs": args.seqs}
    result = _call("POST", target, "/api/dead-letters/replay", _OUTCOMES["replayed"], body)
    if args.all and not result["replayed"] and not result["failed"]:
        print("nothing to replay: no dead letters are waiting", file=out)
        return 0
    return _print_outcome(result, "replayed", out)


def _print_outcome(result: Any, done: str, out: TextIO) -> int:
    """`<done> N: SEQ ...`, then one line per dead letter left in place; the exit status."""
    print(f"{done} {len(result[done])}: {' '.join(map(str, result[done])) or '-'}", file=out)
    for failure in result["failed"]:
        print(f"not {done} {failure['seq']}: {safe(failure['error'])}", file=out)
    return EXIT_PARTIAL if result["failed"] else 0
