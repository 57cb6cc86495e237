"""The processor's inserts, blocking side: drop rows already stored, insert, isolate rows ClickHouse refuses.

Every function here is blocking and runs through `Storage.run` (one chDB session, one thread).

Idempotency: each insert carries `insert_deduplication_token = <base>-<sha1 of its row ids>`, so a token
names exactly one set of rows. A retried or redelivered insert of the same rows is dropped by ClickHouse; a
different subset (after a crash mid-isolation, when some rows are already stored) gets another token and is
not mistaken for a duplicate. Rows already stored are also dropped up front by their identity (`Key`: id and
timestamp, `existing_keys`), and so is a row whose identity came earlier in the same batch.

Rows arrive complete (typed attribute maps made at ingestion, or by `messages.upgrade_payload` for a message
of the release before): nothing here parses or rewrites a payload.
"""

from __future__ import annotations

import collections
import hashlib
from collections.abc import Generator, Iterable, Mapping
from typing import Any

from clickhouse_connect.driver.client import Client

from ..ingestion import row_codec
from ..processing.sink import Unstorable
from .errors import is_data_error
from .migrations import LOGS_TABLE

__all__ = [
    "MAX_ISOLATION_INSERTS",
    "Key",
    "existing_keys",
    "insert_isolating",
    "insert_rows",
]

#: Inserts one message's isolation may cost (bisecting its rows): one poison row among 10,000 rows needs ~28.
#: Past the budget the still-failing chunks are dead-lettered whole (kept for replay, never dropped), so a
#: fault misread as a data error cannot turn into one insert per row.
MAX_ISOLATION_INSERTS = 128


def token(base: str, ids: Iterable[str]) -> str:
    """The deduplication token of an insert of the rows with these ids."""
    return f"{base}-{hashlib.sha1(','.join(ids).encode()).hexdigest()}"


#: A stored entry's identity: (id, timestamp as rows carry it, "2026-11-27T10:00:00.123456Z"). A retry has
#: both the same; the same id with another timestamp is another entry and is stored too, whatever the timing.
Key = tuple[str, str]


def existing_keys(client: Client, ids: Iterable[str], ts_min: str, ts_max: str) -> set[Key]:
    """The identities of rows in `logs` with one of `ids` and a timestamp in [ts_min, ts_max] (only those days
    are read, and the bloom filter on `id` makes this cheap). ids and timestamps were checked against strict
    patterns (no quotes, commas or backslashes), so they are inlined: one string literal split server-side
    costs ClickHouse's parser ~0.05 s where a 50,000-literal IN list costs ~1 s."""
    id_list = ",".join(ids)
    if not id_list:
        return set()
    query = (
        # toString of a DateTime64(6, 'UTC') is "2026-11-27 10:00:00.123456": the row's form but for T and Z.
        f"SELECT id, toString(timestamp) FROM {LOGS_TABLE} "
        f"WHERE timestamp >= parseDateTime64BestEffort('{ts_min}', 6, 'UTC') "
        f"AND timestamp <= parseDateTime64BestEffort('{ts_max}', 6, 'UTC') "
        f"AND id IN (SELECT arrayJoin(splitByChar(',', '{id_list}')))"
    )
    raw = client.raw_query(query, fmt="TabSeparated", settings={"max_query_size": len(query) + 1024})
    keys: set[Key] = set()
    for line in raw.decode().split("\n"):
        if line:
            row_id, stamp = line.split("\t")
            keys.add((row_id, stamp.replace(" ", "T") + "Z"))
    return keys


def _spliced(parts: list[bytes]) -> Generator[bytes, None, None]:
    yield b"["
    for k, part in enumerate(parts):
        if k:
            yield b","
        yield part[1:-1]
    yield b"]"


def _insert(
    client: Client, data: bytes | Iterable[bytes], ids: list[str], base: str, settings: Mapping[str, Any]
) -> None:
    client.raw_insert(
        LOGS_TABLE,
        None,
        data,  # type: ignore[arg-type]  # bytes, or the chunks of _spliced
        fmt="JSONEachRow",
        settings={**settings, "insert_deduplication_token": token(base, ids)},
    )


def _kept_rows(parts: list[bytes], seen: set[Key], suspects: set[str]) -> list[list[tuple[str, bytes]]]:
    """Each message's (id, row) pairs minus rows whose identity is in `seen` (updated: an identity repeated in
    the batch is kept once). Only rows whose id is in `suspects` (stored, or repeated in the batch) can be
    duplicates: only they pay for reading their timestamp. A row without a readable timestamp is kept
    (ClickHouse refuses it, and isolation dead-letters it: never dropped as a duplicate)."""
    out: list[list[tuple[str, bytes]]] = []
    for part in parts:
        kept: list[tuple[str, bytes]] = []
        for row_id, row in zip(row_codec.payload_ids(part) or (), row_codec.split_rows(part), strict=True):
            if row_id in suspects:
                stamp = row_codec.row_timestamp(row)
                if stamp is not None:
                    if (row_id, stamp) in seen:
                        continue
                    seen.add((row_id, stamp))
            kept.append((row_id, row))
        out.append(kept)
    return out


def _suspects(existing: set[Key], ids: list[str]) -> set[str]:
    """Ids that may name a duplicate row: stored ones, and ones that occur more than once in the batch."""
    repeated = {row_id for row_id, n in collections.Counter(ids).items() if n > 1}
    return repeated | {row_id for row_id, _ in existing}


def insert_rows(
    client: Client,
    parts: list[bytes],
    ids: list[str],
    ts_min: str,
    ts_max: str,
    base: str,
    settings: Mapping[str, Any],
) -> tuple[int, int]:
    """Insert the messages' rows as ONE insert, minus rows whose identity (`Key`) is already stored or came
    earlier in the batch.

    Returns (rows inserted, duplicates dropped). Raises what the driver raises (see `is_data_error`)."""
    unique = set(ids)
    existing = existing_keys(client, unique, ts_min, ts_max)
    if existing or len(unique) != len(ids):
        kept = [pair for rows in _kept_rows(parts, existing, _suspects(existing, ids)) for pair in rows]
        if not kept:
            return 0, len(ids)
        kept_ids = [row_id for row_id, _ in kept]
        _insert(client, b"[" + b",".join(row for _, row in kept) + b"]", kept_ids, base, settings)
        return len(kept), len(ids) - len(kept)
    # The payloads spliced into one array as chunks: the driver writes them to its input file one by one,
    # without first copying the whole batch (tens of MB) into one bytes object.
    _insert(client, parts[0] if len(parts) == 1 else _spliced(parts), ids, base, settings)
    return len(ids), 0


def insert_isolating(
    client: Client,
    parts: list[bytes],
    ids: list[str],
    ts_min: str,
    ts_max: str,
    base: str,
    settings: Mapping[str, Any],
) -> tuple[int, int, list[Unstorable]]:
    """Store every row ClickHouse takes, message by message, bisecting a message whose insert is refused
    (a poison row, or more days than one insert may touch) down to the rows that cannot be stored.

    Returns (rows inserted, duplicates dropped, the refused rows by message). Raises on a transient error
    (the caller retries the whole call: rows stored before it are then dropped as existing)."""
    existing = existing_keys(client, set(ids), ts_min, ts_max)
    per_message = _kept_rows(parts, existing, _suspects(existing, ids))
    inserted = 0
    refused: list[Unstorable] = []
    for index, kept in enumerate(per_message):
        budget = MAX_ISOLATION_INSERTS
        pending = [kept] if kept else []
        while pending:
            chunk = pending.pop()
            if budget <= 0:
                refused.append(Unstorable(index, [r for _, r in chunk], "isolation budget spent: not tried"))
                continue
            try:
                budget -= 1
                _insert(
                    client,
                    b"[" + b",".join(r for _, r in chunk) + b"]",
                    [i for i, _ in chunk],
                    base,
                    settings,
                )
                inserted += len(chunk)
            except Exception as exc:
                if not is_data_error(exc):
                    raise
                if len(chunk) == 1 or budget <= 0:
                    refused.append(Unstorable(index, [r for _, r in chunk], str(exc)))
                else:
                    half = len(chunk) // 2
                    pending += [chunk[half:], chunk[:half]]
    return inserted, len(ids) - sum(len(k) for k in per_message), _merged(refused)


def _merged(refused: list[Unstorable]) -> list[Unstorable]:
    """One Unstorable per message (its refused chunks joined, the first error kept)."""
    by_index: dict[int, Unstorable] = {}
    for item in refused:
        if item.index in by_index:
            by_index[item.index].rows += item.rows
        else:
            by_index[item.index] = Unstorable(item.index, list(item.rows), item.error)
    return list(by_index.values())
