"""`oglog tail --backfill`: after a reconnect, the gap's stored entries from `GET /api/logs`, each once.

The live tail is not replayed. With `--backfill`, tail asks the query API for the entries stamped from the
last entry it printed (inclusive) to the reconnect (plus a second), at most BACKFILL_MAX of them, prints them
oldest first, and remembers the (id, timestamp) of the last SEEN_MAX entries it printed, live or backfilled,
so none is printed twice (the last entry before the gap comes back from `from`; an entry accepted after the
reconnect can be both stored in time and sent live). What it cannot fetch, it says: entries not stored yet
when it asks (the processor inserts within seconds) and entries stamped outside the span (an SDK's own clock,
a replayed spool) - the stderr line names the span for `oglog query`.
"""

from __future__ import annotations

import shlex
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from . import _shapes
from ._http import CliError, Target, request_json
from ._output import safe

__all__ = ["BACKFILL_MAX", "BACKFILL_PAGE", "SEEN_MAX", "Seen", "backfill", "query_command"]

#: Entries one gap's backfill prints at most; past it tail says how to query the rest.
BACKFILL_MAX = 10_000
#: Entries per `GET /api/logs` page while backfilling.
BACKFILL_PAGE = 1_000
#: (id, timestamp) pairs of the entries printed last that tail remembers against printing one twice.
SEEN_MAX = 2 * BACKFILL_MAX


def query_command(flags: Sequence[str], since: str, until: str) -> str:
    """The `oglog query` command that shows what the tail missed in [since, until] (RFC 3339 UTC): its filter
    `flags` (e.g. ["--service", "api"]; `oglog query` takes the tail's), shell-quoted, terminal-safe."""
    return safe(shlex.join(["oglog", "query", *flags, "--from", since, "--to", until]))


class Seen:
    """The last `limit` entry keys printed, oldest forgotten first."""

    def __init__(self, limit: int = SEEN_MAX) -> None:
        self.limit = limit
        self._keys: OrderedDict[tuple[Any, Any], None] = OrderedDict()

    def add(self, entry: dict[str, Any]) -> bool:
        """Remember `entry`; False if it was printed already (then print it not again)."""
        key = (entry.get("id"), entry.get("timestamp"))
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self.limit:
            self._keys.popitem(last=False)
        return True


def backfill(target: Target, params: list[tuple[str, Any]], since: str, until: str, seen: Seen,
             emit: Callable[[dict[str, Any]], None], err: TextIO, flags: Sequence[str] = ()) -> int:
    """Print (`emit`) the stored entries matching `params` stamped in [since, until) that `seen` has not
    printed, oldest first, at most BACKFILL_MAX; say on `err` what was done (past BACKFILL_MAX, the
    `query_command` with the tail's filter `flags`). Returns how many were printed. A failing query is said
    on `err` and ends only the backfill (tail goes on)."""
    fetched: list[dict[str, Any]] = []
    cursor: str | None = None
    try:
        with target.client() as client:
            while len(fetched) < BACKFILL_MAX:
                query = [*params, ("from", since), ("to", until), ("limit", str(BACKFILL_PAGE))]
                query += [("cursor", cursor)] if cursor else []
                response, page = request_json(client, "GET", "/api/logs", params=query, shape=_shapes.entries,
                                              deadline=time.monotonic() + target.deadline)
                fetched.extend(page[:BACKFILL_PAGE])
                cursor = response.headers.get("X-Next-Cursor")
                if not cursor or len(page) < BACKFILL_PAGE:
                    cursor = None
                    break
    except CliError as exc:
        err.write(f"oglog tail: backfill failed ({exc}); the gap stays unfilled\n")
        return 0
    printed = 0
    for entry in reversed(fetched[:BACKFILL_MAX]):  # the API answers newest first; the tail runs oldest first
        if seen.add(entry):
            emit(entry)
            printed += 1
    more = f"; stopped at {BACKFILL_MAX}, the rest: {query_command(flags, since, until)}" if cursor else ""
    err.write(f"oglog tail: backfilled {printed} entries stamped {since} .. {until} from /api/logs (entries "
              f"not stored yet or stamped outside that span are not among them){more}\n")
    return printed
