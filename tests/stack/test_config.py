"""Server configuration: the seed's environment variables, validated once, errors naming the variable."""

from __future__ import annotations

import pytest
from oglogstream.stack.config import StackConfig, normalize_clickhouse_dsn, parse_duration


def test_seed_environment_variables_are_read() -> None:
    """Every variable the seed README documents configures the matching setting."""
    config = StackConfig.from_env(
        ("ingest",),
        {
            "NATS_URL": "nats://nats:4222",
            "HTTP_PORT": "8081",
            "CLICKHOUSE_DSN": "http://default:@clickhouse:8123/default",
            "BATCH_SIZE": "500",
            "FLUSH_TIMEOUT": "2s",
            "MAX_RETRIES": "3",
            "SHUTDOWN_TIMEOUT": "30s",
            "LOG_LEVEL": "debug",
        },
    )
    assert config.nats_url == "nats://nats:4222"
    assert config.http_port == 8081
    assert config.clickhouse_dsn == "http://default:@clickhouse:8123/default"
    assert (config.batch_size, config.flush_timeout, config.max_retries) == (500, 2.0, 3)
    assert config.shutdown_timeout == 30.0
    assert config.log_level == "debug"


def test_stream_replicas_for_a_nats_cluster() -> None:
    """NATS_STREAM_REPLICAS sets the JetStream replica count, within the 1..5 JetStream allows."""
    assert StackConfig.from_env(("ingest",), {"NATS_STREAM_REPLICAS": "3"}).stream_replicas == 3
    assert StackConfig.from_env(("ingest",), {}).stream_replicas == 1
    with pytest.raises(ValueError, match="stream_replicas"):
        StackConfig.from_env(("ingest",), {"NATS_STREAM_REPLICAS": "7"})


def test_clickhouse_url_is_an_alias_for_the_dsn() -> None:
    """CLICKHOUSE_URL is accepted where CLICKHOUSE_DSN is absent."""
    config = StackConfig.from_env(("query",), {"CLICKHOUSE_URL": "chdb:///tmp/x"})
    assert config.clickhouse_dsn == "chdb:///tmp/x"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"HTTP_PORT": "eighty"}, "HTTP_PORT"),
        ({"BATCH_SIZE": "0"}, "batch_size"),
        ({"FLUSH_TIMEOUT": "soon"}, "FLUSH_TIMEOUT"),
        ({"CLICKHOUSE_DSN": "postgres://x"}, "CLICKHOUSE_DSN"),
        ({"LOG_LEVEL": "loud"}, "log_level"),
    ],
)
def test_bad_values_name_the_setting(env: dict[str, str], variable: str) -> None:
    """A bad value raises ValueError that says which setting and why."""
    with pytest.raises(ValueError, match=variable):
        StackConfig.from_env(("ingest",), env)


def test_unknown_role_is_rejected() -> None:
    """Only ingest, process and query are roles."""
    with pytest.raises(ValueError, match="roles"):
        StackConfig(roles=("ingest", "frontend"))


@pytest.mark.parametrize(
    ("text", "seconds"), [("2s", 2.0), ("500ms", 0.5), ("1m", 60.0), ("1.5", 1.5), ("1h", 3600.0)]
)
def test_durations_parse_like_go(text: str, seconds: float) -> None:
    """Go-style durations from the seed's env files parse to seconds."""
    assert parse_duration(text, name="X") == seconds


def test_seed_native_dsn_becomes_http() -> None:
    """The seed's clickhouse://host:9000 DSN is served over HTTP on 8123, which clickhouse-connect speaks."""
    assert normalize_clickhouse_dsn("clickhouse://default:@clickhouse:9000/default") == (
        "http://default:@clickhouse:8123/default"
    )
    assert normalize_clickhouse_dsn("clickhouse://ch:8443/db") == "http://ch:8443/db"
