"""The live tail's Prometheus series, one set per hub (live.py), registered on the app's registry."""

from __future__ import annotations

from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["LiveSeries", "live_series"]


class LiveSeries(NamedTuple):
    connected: Gauge  # clients connected now
    dropped: Counter  # entries dropped for clients whose queue was full
    interrupted: Counter  # clients closed 1013 because entries may be missing, by reason
    bad_payloads: Counter  # live-subject lines that were not JSON objects


def live_series(registry: CollectorRegistry) -> LiveSeries:
    """Create the hub's series on `registry` (ValueError if they exist there already, as prometheus_client
    raises for any duplicate)."""
    return LiveSeries(
        Gauge("oglog_live_clients", "Live-tail WebSocket clients connected.", registry=registry),
        Counter(
            "oglog_live_dropped",
            "Live-tail entries dropped for clients whose queue was full.",
            registry=registry,
        ),
        Counter(
            "oglog_live_interrupted",
            "Live-tail clients closed because entries may be missing, by reason.",
            ["reason"],
            registry=registry,
        ),
        Counter(
            "oglog_live_bad_payloads",
            "Live-subject lines that were not JSON objects (skipped).",
            registry=registry,
        ),
    )
