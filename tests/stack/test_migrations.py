"""Versioned storage migrations: a data directory written by the previous release is upgraded once at start
(old rows still queryable, new rows typed), a second start applies nothing, racing starts do not break or
double-record anything, and a failed migration is retried on the next start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from multidict import MultiDict
from oglogstream import wire
from oglogstream.stack.ingestion import schema
from oglogstream.stack.query import query_sql
from oglogstream.stack.query.filters import Filters
from oglogstream.stack.storage import inserts, migrations
from oglogstream.stack.storage.migrations import LOGS_TABLE, MIGRATIONS_TABLE, TYPED_ATTRIBUTE_COLUMNS
from oglogstream.stack.storage.storage import Storage

from .query_helpers import utc

pytestmark = pytest.mark.timeout(90)

PREVIOUS_DDL = (Path(__file__).parent / "fixtures" / "previous_release_logs.sql").read_text()
LATEST = len(migrations.MIGRATIONS)
TTL = "toDate32(timestamp) + toIntervalDay(31)"


def previous_release_store(dsn: str) -> None:
    """A data dir as the previous release left it: its logs table and rows of its shape (string values)."""
    storage = Storage(dsn)
    try:
        ddl = "\n".join(line for line in PREVIOUS_DDL.splitlines() if not line.startswith("--"))
        storage.client.command(ddl)
        ts = utc(minutes=5)
        attributes = {"status": "500", "ms": "12.5"}
        rows = [[ts, ts, f"old{i}", "svc", "info", "before", attributes] for i in range(3)]
        storage.client.insert(
            LOGS_TABLE,
            rows,
            column_names=["timestamp", "received_at", "id", "service", "level", "message", "attributes"],
        )
    finally:
        storage.close()


def versions(client: Any) -> list[int]:
    rows = client.query(f"SELECT version FROM {MIGRATIONS_TABLE} FINAL ORDER BY version").result_rows
    return [int(row[0]) for row in rows]


def columns(client: Any) -> dict[str, str]:
    sql = (
        f"SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = '{LOGS_TABLE}'"
    )
    return dict(client.query(sql).result_rows)


def latest(client: Any, query: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return query_sql.latest_logs(client, Filters.from_query(MultiDict(query)), None, 100, 0, 10**18)


def new_row(client: Any) -> None:
    now = utc().isoformat() + "Z"
    row = {
        "id": "new1",
        "timestamp": now,
        "level": "info",
        "message": "after",
        "service": "svc",
        "attributes": {"status": 500, "ms": 7.5, "ok": True},
        "received_at": now,
    }
    schema.add_typed_maps([row])  # as ingestion writes it
    inserts.insert_rows(client, [json.dumps([row]).encode()], ["new1"], "2000-01-01", "2200-01-01", "t", {})


def test_previous_release_data_dir_is_migrated_once(chdb_dsn: str) -> None:
    """Upgrade: every migration applied and recorded once; old rows keep answering (as strings), new rows
    are typed, attribute filters see both; a second start applies nothing."""
    previous_release_store(chdb_dsn)
    storage = Storage(chdb_dsn)
    try:
        client = storage.client
        assert migrations.apply(client, table=LOGS_TABLE, ttl=TTL) == [
            m.version for m in migrations.MIGRATIONS
        ]
        storage.ensure_schema()  # the second start (also checks the TTL rule)
        assert migrations.apply(client, table=LOGS_TABLE, ttl="x") == []
        assert versions(client) == list(range(1, LATEST + 1))
        new_row(client)
        rows = {row["id"]: row for row in latest(client, [])}
        assert rows["old0"]["attributes"] == {"status": "500", "ms": "12.5"}  # stored before: strings
        assert rows["new1"]["attributes"] == {"status": 500, "ms": 7.5, "ok": True}
        assert {r["id"] for r in latest(client, [("attr.status", "500")])} == {"old0", "old1", "old2", "new1"}
        assert {r["id"] for r in latest(client, [("attr.ms>5", "")])} == {"new1"}  # numbers only
    finally:
        storage.close()


def test_fresh_store_has_the_wire_columns_and_the_typed_ones(chdb_dsn: str) -> None:
    """The table the migrations build is oglogstream.wire's columns plus the typed attribute maps, and
    `logs_ddl` (one statement, for scratch tables) builds the same columns."""
    storage = Storage(chdb_dsn)
    try:
        storage.ensure_schema()
        expected = {f.column: f.clickhouse_type for f in wire.COLUMNS} | TYPED_ATTRIBUTE_COLUMNS
        assert columns(storage.client) == expected
        from oglogstream.stack.storage.storage import logs_ddl

        storage.client.command(logs_ddl(retention_days=30, table="scratch"))
        sql = "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = 'scratch'"
        assert dict(storage.client.query(sql).result_rows) == expected
    finally:
        storage.close()


def test_racing_starts_neither_fail_nor_double_record(chdb_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second role that read `schema_migrations` before the first recorded anything re-runs every
    statement: they are idempotent, so it succeeds, and each version still reads once."""
    storage = Storage(chdb_dsn)
    try:
        storage.ensure_schema()
        before = columns(storage.client)
        monkeypatch.setattr(migrations, "applied", lambda client: set())  # the racer's stale read
        assert migrations.apply(storage.client, table=LOGS_TABLE, ttl=TTL)
        monkeypatch.undo()
        assert columns(storage.client) == before
        assert versions(storage.client) == list(range(1, LATEST + 1))
        assert migrations.applied(storage.client) == set(range(1, LATEST + 1))
    finally:
        storage.close()


class _FailingAlter:
    """The client boundary: ALTER statements fail (a server refusing DDL), everything else goes through."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def command(self, sql: str, **kwargs: Any) -> Any:
        if sql.lstrip().startswith("ALTER"):
            raise RuntimeError("Code: 497. DB::Exception: not allowed (injected)")
        return self._client.command(sql, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_failed_migration_stays_pending_and_is_retried(chdb_dsn: str) -> None:
    """A migration whose statement fails is not recorded: start fails loudly, the next start applies it."""
    previous_release_store(chdb_dsn)
    storage = Storage(chdb_dsn)
    try:
        with pytest.raises(RuntimeError, match="injected"):
            storage.ensure_schema(_FailingAlter(storage.client))  # type: ignore[arg-type]
        assert versions(storage.client) == [1]
        storage.ensure_schema()
        assert versions(storage.client) == list(range(1, LATEST + 1))
        assert set(TYPED_ATTRIBUTE_COLUMNS) <= set(columns(storage.client))
    finally:
        storage.close()
