"""Storage schema and error classes: the retention rule keeps every date the column can hold until it is truly
older than the retention, an older release's table is migrated on start, and ClickHouse errors are sorted into
data errors (never retried as such) and transient ones."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from oglogstream.stack.ingestion.timestamps import TimeWindow
from oglogstream.stack.storage.errors import is_data_error
from oglogstream.stack.storage.migrations import LOGS_TABLE
from oglogstream.stack.storage.storage import TTL_SLACK_DAYS, Storage, logs_ddl, ttl_expression

# The previous release's DDL differed only in its TTL line.
OLD_DDL = logs_ddl(retention_days=30).replace(
    f"TTL {ttl_expression(30)} DELETE", "TTL toDateTime(timestamp) + INTERVAL 30 DAY DELETE"
)
KEPT = ["2150-01-01 00:00:00", "2106-02-08 00:00:00", "2299-01-01 00:00:00", "2299-12-31 23:59:59"]
EXPIRED = ["1969-12-31 23:59:59", "2000-01-01 00:00:00", "1900-01-01 00:00:00"]


def _insert_and_merge(storage: Storage, stamps: list[str]) -> list[str]:
    client = storage.client
    for ts in stamps:  # one part each, so a TTL can drop whole parts (ttl_only_drop_parts)
        client.command(f"INSERT INTO {LOGS_TABLE} (timestamp, id) VALUES ('{ts}', '{ts}')")
    client.command(f"OPTIMIZE TABLE {LOGS_TABLE} FINAL")
    return sorted(str(r[0]) for r in client.query(f"SELECT id FROM {LOGS_TABLE}").result_rows)


def _engine(storage: Storage) -> str:
    return str(storage.client.command(f"SELECT engine_full FROM system.tables WHERE name = '{LOGS_TABLE}'"))


def test_far_future_dates_are_kept_and_old_ones_expire(chdb_dsn: str) -> None:
    """Dates after 2106 (where DateTime wraps) stay; dates older than the retention go."""
    storage = Storage(chdb_dsn)
    try:
        storage.ensure_schema()
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
        recent = str(now - dt.timedelta(days=29))
        assert _insert_and_merge(storage, [*KEPT, recent, *EXPIRED]) == sorted([*KEPT, recent])
    finally:
        storage.close()


@pytest.mark.parametrize("retention_days", [1, 7, 30])
def test_every_timestamp_the_door_accepts_survives_the_ttl(chdb_dsn: str, retention_days: int) -> None:
    """The oldest accepted entry (window start + 1 h, and the window start itself) is kept by OPTIMIZE FINAL;
    a day older than window + TTL slack expires."""
    storage = Storage(chdb_dsn, retention_days=retention_days)
    try:
        storage.ensure_schema()
        now = dt.datetime.now(dt.timezone.utc)
        oldest = dt.datetime.fromisoformat(TimeWindow.around(now, retention_days=retention_days).oldest[:-1])
        start = oldest.replace(microsecond=0) + dt.timedelta(seconds=1)
        kept = [str(start), str(start + dt.timedelta(hours=1))]
        gone = str((oldest - dt.timedelta(days=TTL_SLACK_DAYS + 1)).replace(microsecond=0))
        assert _insert_and_merge(storage, [*kept, gone]) == sorted(kept)
    finally:
        storage.close()


def test_ttl_keeps_the_window_start_for_every_hour_of_the_day() -> None:
    """Whatever the time of day, the day partition of the window's oldest timestamp expires after now."""
    day = dt.datetime(2026, 11, 29, tzinfo=dt.timezone.utc)
    for minutes in range(0, 24 * 60, 7):
        now = day + dt.timedelta(minutes=minutes)
        oldest = dt.datetime.fromisoformat(TimeWindow.around(now, retention_days=30).oldest[:-1])
        expires = dt.datetime.combine(oldest.date(), dt.time(), dt.timezone.utc) + dt.timedelta(
            days=30 + TTL_SLACK_DAYS
        )
        assert expires > now


def test_table_of_the_previous_release_gets_the_new_ttl(chdb_dsn: str) -> None:
    """A data dir made with the old DDL is migrated by ensure_schema, idempotently, and keeps 2150 rows."""
    storage = Storage(chdb_dsn)
    try:
        storage.client.command(OLD_DDL)
        assert "toDateTime(timestamp)" in _engine(storage)
        storage.ensure_schema()
        storage.ensure_schema()  # second start: nothing to change
        assert f"TTL {ttl_expression(30)}" in _engine(storage)
        assert _insert_and_merge(storage, KEPT) == sorted(KEPT)
    finally:
        storage.close()


def test_retention_change_is_applied_to_an_existing_table(chdb_dsn: str) -> None:
    """RETENTION_DAYS read at start is the rule in force, whatever the table was created with."""
    Storage(chdb_dsn, retention_days=30).ensure_schema()
    storage = Storage(chdb_dsn, retention_days=7)
    try:
        storage.ensure_schema()
        assert f"TTL {ttl_expression(7)}" in _engine(storage)
        assert "toIntervalDay(8)" in _engine(storage)  # 7 days of retention + TTL_SLACK_DAYS
    finally:
        storage.close()


def test_insert_settings_allow_every_day_the_door_accepts() -> None:
    """An insert may touch retention + margin partitions, never fewer than ClickHouse's 100."""
    assert Storage("http://localhost:8123", retention_days=30).insert_settings == {
        "max_partitions_per_insert_block": 100
    }
    assert Storage("http://localhost:8123", retention_days=365).insert_settings == {
        "max_partitions_per_insert_block": 368
    }


@pytest.mark.parametrize(
    ("error", "data"),
    [
        ("Code: 27. DB::Exception: Cannot parse input: expected '\"' before: 'x'", True),
        ("Code: 252. DB::Exception: Too many partitions for single INSERT block (more than 100).", True),
        ("Code: 321. DB::Exception: Value out of range of Date32", True),
        ("Code: 252. DB::Exception: Too many parts (600). Merges are processing significantly slower", False),
        ("Code: 241. DB::Exception: Memory limit (total) exceeded", False),
        ("Code: 60. DB::Exception: Table default.logs does not exist", False),
        ("HTTPConnectionPool(host='ch', port=8123): Max retries exceeded", False),
    ],
)
def test_errors_are_classified_by_what_they_say_about_the_rows(error: str, data: bool) -> None:
    """Row problems are data errors; server state and connection problems are transient."""
    exc: Any = Exception(error)
    assert is_data_error(exc) is data
