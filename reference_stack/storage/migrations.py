"""Versioned storage migrations, applied at start by `Storage.ensure_schema` (chDB and ClickHouse servers).

`schema_migrations` records the versions applied (one row per version and start that applied it; read with
DISTINCT). Each migration is a list of idempotent statements (`CREATE ... IF NOT EXISTS`, `ADD COLUMN IF NOT
EXISTS`), so two roles starting at once on one server may both run a pending migration without harm: the
second run changes nothing and its version row collapses into the first (ReplacingMergeTree, DISTINCT).

A migration's text never changes once released: v1 is byte for byte the table the previous release created
(tests/stack/fixtures/previous_release_logs.sql holds that release's DDL as the test oracle). Changes to the
schema are new migrations appended to MIGRATIONS.

Statements are templates: `{table}` is the logs table, `{ttl}` the retention rule (`storage.ttl_expression`).
"""

from __future__ import annotations

import dataclasses
import logging

from clickhouse_connect.driver.client import Client

__all__ = [
    "LOGS_TABLE",
    "MIGRATIONS",
    "MIGRATIONS_TABLE",
    "TYPED_ATTRIBUTE_COLUMNS",
    "Migration",
    "applied",
    "apply",
    "current_logs_ddl",
]

log = logging.getLogger(__name__)

#: The table every entry is stored in (its schema: the migrations below; its name: here, once).
LOGS_TABLE = "logs"
MIGRATIONS_TABLE = "schema_migrations"

_MIGRATIONS_DDL = f"""
CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    version    UInt32,
    name       String,
    applied_at DateTime64(6, 'UTC') DEFAULT now64(6)
) ENGINE = ReplacingMergeTree
ORDER BY version
"""

# Ordered for the common query: one service, a time range, newest first. Codecs as in the OTel collector's
# otel_logs (Delta+ZSTD for time, ZSTD elsewhere). `id` carries the client's idempotency key; its bloom filter
# makes the processor's "already stored?" check cheap. The text index serves `q`. The minmax index on
# timestamp and the finer granularity (2048) let a newest-first scan across all services skip most granules:
# measured at 10M rows, unfiltered latest-100 37 -> 29 ms and a raw top-100 116 -> 18 ms.
_V1_LOGS = """
CREATE TABLE IF NOT EXISTS {table} (
    timestamp   DateTime64(6, 'UTC') CODEC(Delta(8), ZSTD(1)),
    received_at DateTime64(6, 'UTC') CODEC(Delta(8), ZSTD(1)),
    id          String CODEC(ZSTD(1)),
    service     LowCardinality(String) CODEC(ZSTD(1)),
    level       LowCardinality(String) CODEC(ZSTD(1)),
    message     String CODEC(ZSTD(1)),
    logger      LowCardinality(String) CODEC(ZSTD(1)),
    host        LowCardinality(String) CODEC(ZSTD(1)),
    pid         UInt32 CODEC(ZSTD(1)),
    thread      String CODEC(ZSTD(1)),
    trace_id    String CODEC(ZSTD(1)),
    span_id     String CODEC(ZSTD(1)),
    exception   String CODEC(ZSTD(1)),
    attributes  Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    INDEX idx_timestamp timestamp TYPE minmax GRANULARITY 1,
    INDEX idx_id id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_message message TYPE text(tokenizer = splitByNonAlpha, preprocessor = lowerUTF8(message))
) ENGINE = MergeTree
PARTITION BY toDate(timestamp)
ORDER BY (service, timestamp)
TTL {ttl} DELETE
SETTINGS index_granularity = 2048, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000
"""

#: The typed attribute columns (OpenTelemetry-exporter / SigNoz style): `attributes` keeps every value's
#: string form; these hold the same keys' values when they were JSON numbers / booleans. Name -> type.
TYPED_ATTRIBUTE_COLUMNS = {
    "attributes_number": "Map(LowCardinality(String), Float64)",
    "attributes_bool": "Map(LowCardinality(String), Bool)",
}

# ADD COLUMN is a metadata change: existing parts are not rewritten, their rows read the empty-map default.
_V2_TYPED = "ALTER TABLE {table} " + ", ".join(
    f"ADD COLUMN IF NOT EXISTS {name} {kind} CODEC(ZSTD(1)) AFTER attributes"
    for name, kind in reversed(TYPED_ATTRIBUTE_COLUMNS.items())
)


@dataclasses.dataclass(frozen=True)
class Migration:
    """One schema version: idempotent statement templates run in order."""

    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create the logs table", (_V1_LOGS,)),
    Migration(2, "typed attribute values: attributes_number, attributes_bool", (_V2_TYPED,)),
)
assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1)), "versions are 1, 2, 3, ..."


def current_logs_ddl(*, table: str, ttl: str) -> str:
    """One CREATE TABLE with what every migration gives the logs table (v1 plus the typed columns)."""
    line = "    attributes  Map(LowCardinality(String), String) CODEC(ZSTD(1)),\n"
    typed = "".join(f"    {name} {kind} CODEC(ZSTD(1)),\n" for name, kind in TYPED_ATTRIBUTE_COLUMNS.items())
    assert line in _V1_LOGS
    return _V1_LOGS.replace(line, line + typed).format(table=table, ttl=ttl)


def applied(client: Client) -> set[int]:
    """The versions recorded in `schema_migrations` (creates that table when missing). Blocking."""
    client.command(_MIGRATIONS_DDL)
    raw = client.raw_query(f"SELECT DISTINCT version FROM {MIGRATIONS_TABLE}", fmt="TabSeparated")
    return {int(line) for line in raw.decode().split()}


def apply(client: Client, *, table: str, ttl: str) -> list[int]:
    """Run every migration not yet recorded, in order, recording each after its statements succeeded.
    Returns the versions this call applied ([] when the schema was current). Raises what the driver raises
    (the failed migration stays unrecorded, so the next start retries it). Blocking."""
    done = applied(client)
    # Nothing recorded yet: a new data dir (or the release before migrations) gets its schema, routine news;
    # a later upgrade of a store already in use is worth a warning.
    level = logging.INFO if not done else logging.WARNING
    ran = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        log.log(level, "storage: applying migration %d (%s)", migration.version, migration.name)
        for statement in migration.statements:
            client.command(statement.format(table=table, ttl=ttl))
        client.command(
            f"INSERT INTO {MIGRATIONS_TABLE} (version, name) VALUES ({{v:UInt32}}, {{n:String}})",
            parameters={"v": migration.version, "n": migration.name},
        )
        ran.append(migration.version)
    return ran
