"""GET /metrics of a stack with ingest workers: every process's registry in one exposition.

Each process counts what it does (a worker its requests, accepted and rejected entries; the supervisor its
inserts, queries, live clients), so the public /metrics, answered by whichever worker the scrape lands on,
gathers the supervisor's exposition (over its Unix socket) and each worker's (over the worker's own Unix
socket, `worker_socket_path`), and gives every series a `process` label ("supervisor", "ingest-0", ...).
Per-process series, not sums: a restarted worker starts its counters at zero, which Prometheus reads as a
reset of that one series, so `sum(rate(...))` stays right. A process that does not answer within
SCRAPE_TIMEOUT is left out (its series are absent from that scrape, as a down target's would be).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from ..http.local_socket import get_over_socket

__all__ = ["SCRAPE_TIMEOUT", "gather", "merge", "worker_socket_path"]

#: How long the gathering worker waits for each other process's exposition.
SCRAPE_TIMEOUT = 5.0


def worker_socket_path(supervisor_socket: Path, index: int) -> Path:
    """The Unix socket on which ingest worker `index` answers its own /metrics (beside the supervisor's)."""
    return supervisor_socket.with_name(f"oglog-ingest-{index}.sock")


async def _fetch(path: Path, headers: dict[str, str]) -> str | None:
    try:
        answer = await get_over_socket(path, "/metrics", timeout=SCRAPE_TIMEOUT, headers=headers)
    except asyncio.TimeoutError:
        return None
    return answer[1].decode() if answer is not None and answer[0] == 200 else None


async def gather(
    supervisor_socket: Path, workers: int, *, own_index: int, own: str, headers: dict[str, str]
) -> bytes:
    """The merged exposition: the supervisor's, `own` (this worker's) and every other worker's, each asked
    with the scraper's `headers` (its credentials, when the stack requires them)."""
    names = ["supervisor"] + [f"ingest-{k}" for k in range(workers)]
    paths: list[Path | None] = [supervisor_socket]
    paths += [None if k == own_index else worker_socket_path(supervisor_socket, k) for k in range(workers)]
    texts = await asyncio.gather(*(_fetch(p, headers) if p is not None else _own(own) for p in paths))
    return merge([(name, text) for name, text in zip(names, texts, strict=True) if text is not None])


async def _own(text: str) -> str:
    return text


def merge(expositions: list[tuple[str, str]]) -> bytes:
    """(process name, text exposition) pairs -> one exposition, each sample labelled process=<name>."""
    families: dict[str, Metric] = {}
    for process, text in expositions:
        for family in text_string_to_metric_families(text):
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
            for sample in family.samples:
                merged.add_sample(
                    sample.name, {**sample.labels, "process": process}, sample.value, sample.timestamp
                )

    class _Merged:
        def collect(self) -> Iterator[Metric]:
            yield from families.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged())
    return generate_latest(registry)
