"""Prometheus metrics of one app: a private CollectorRegistry each, so several apps (tests) never collide."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """All counters of the stack. Loss and rejection are counted by reason, never silently."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "oglog_http_requests", "HTTP requests by route and status.", ["route", "status"], registry=r
        )
        self.entries_accepted = Counter(
            "oglog_entries_accepted",
            "Entries accepted (durable in JetStream) by route.",
            ["route"],
            registry=r,
        )
        self.entries_rejected = Counter(
            "oglog_entries_rejected",
            "Entries or requests rejected by ingestion, by reason (http.boundary.Problem.kind).",
            ["reason"],
            registry=r,
        )
        self.publish_latency = Histogram(
            "oglog_publish_seconds",
            "JetStream publish round trip (until the broker's ack).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batches_inserted = Counter("oglog_batches_inserted", "Inserts into ClickHouse.", registry=r)
        self.rows_inserted = Counter("oglog_rows_inserted", "Rows inserted into ClickHouse.", registry=r)
        self.insert_latency = Histogram(
            "oglog_insert_seconds", "ClickHouse insert duration.", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.insert_retries = Counter(
            "oglog_insert_retries", "Insert attempts that failed and were retried.", registry=r
        )
        self.naks = Counter(
            "oglog_messages_nacked", "Messages handed back to JetStream for later redelivery.", registry=r
        )
        self.duplicates_skipped = Counter(
            "oglog_duplicates_skipped",
            "Duplicates dropped: stage=broker (JetStream Nats-Msg-Id window, counted in messages) or "
            "stage=storage (rows whose id+timestamp is stored or repeated in a batch, counted in rows).",
            ["stage"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "oglog_dead_lettered",
            "Messages moved to the dead-letter subject, by reason.",
            ["reason"],
            registry=r,
        )
        self.dead_letters = Gauge(
            "oglog_dead_letters",
            "Dead letters waiting in the dead-letter stream for an operator (GET /api/dead-letters).",
            registry=r,
        )
        self.consumer_pending = Gauge(
            "oglog_consumer_pending", "Messages waiting in the stream for the processor.", registry=r
        )
        self.live_publish_errors = Counter(
            "oglog_live_publish_errors", "Best-effort live-tail publishes that failed.", registry=r
        )

    def exposition(self) -> bytes:
        """The text exposition format for GET /metrics (content type CONTENT_TYPE_LATEST)."""
        return generate_latest(self.registry)
