"""A real three-node NATS cluster (nats-server from the wheel, cluster routes on free ports) with the stream
replicated 3x (NATS_STREAM_REPLICAS=3): the node leading the stream is SIGKILLed mid-stream, and every
acknowledged entry is still stored exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from oglogstream.stack.broker.natsd import NatsServer, free_port
from oglogstream.stack.config import STREAM_NAME

from tests.stack.query_helpers import OglogProcess

from .helpers import RetryingPoster, assert_exactly_once, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[list[NatsServer]]:
    cluster_ports = [free_port() for _ in range(3)]
    routes = [f"nats-route://127.0.0.1:{p}" for p in cluster_ports]
    nodes = [
        NatsServer(tmp_path / f"n{k}", name=f"n{k}", cluster_port=cluster_ports[k], routes=routes)
        for k in range(3)
    ]
    try:
        for node in nodes:
            node.spawn()  # all at once: each waits for the others to form the JetStream meta group
        for node in nodes:
            wait_until(node.listening, timeout=20, what=f"{node.name} listening")
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def _stream_placement(url: str) -> tuple[str, int] | None:
    """(leader name, replicas that are current) of the logs stream, or None while it has no leader."""
    with contextlib.suppress(Exception):
        nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            info = await nc.jetstream(timeout=2).stream_info(STREAM_NAME)
        finally:
            await nc.close()
        if info.cluster is not None and info.cluster.leader:
            current = sum(1 for r in info.cluster.replicas or [] if r.current)
            return info.cluster.leader, current
    return None


def test_stream_leader_killed_mid_stream_loses_and_doubles_nothing(
    cluster: list[NatsServer], tmp_path: Path
) -> None:
    """R3 stream on three nodes; SIGKILL of its leader while a client posts: exact counts at the end."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "NATS_URL": ",".join(node.url for node in cluster),
        "NATS_STREAM_REPLICAS": "3",
        "CLICKHOUSE_DSN": f"chdb://{tmp_path / 'clickhouse'}",
        "HTTP_PORT": str(port),
    }
    with OglogProcess(["serve", "ingest", "process", "query"], tmp_path / "stack.log", env=env) as stack:
        stack.wait_healthy(base)
        placement = wait_until(
            lambda: (p := asyncio.run(_stream_placement(cluster[0].url))) and p[1] == 2 and p,
            timeout=30,
            what="stream replicated on 3 nodes",
        )
        poster = RetryingPoster(base, "cluster")
        poster.start()
        try:
            wait_until(lambda: poster.accepted_now() >= 200, timeout=20, what="posting")
            leader = next(node for node in cluster if node.name == placement[0])
            assert leader.process is not None
            os.kill(leader.process.pid, signal.SIGKILL)
            mark = poster.accepted_now()
            wait_until(lambda: poster.accepted_now() >= mark + 300, timeout=45, what="202s after the kill")
        finally:
            accepted = poster.finish()
        assert_exactly_once(base, "cluster", accepted, timeout=45)
        survivor = next(node for node in cluster if node is not leader)
        new = asyncio.run(_stream_placement(survivor.url))
        assert new is not None and new[0] != leader.name
        stack.signal(signal.SIGTERM)
        assert stack.wait(60) == 0, stack.output()
