"""The processing role (`oglog serve process query`) SIGKILLed mid-stream and restarted: ingestion keeps
acknowledging meanwhile (good data is never held back at the door), and after the restart every acknowledged
entry is stored exactly once."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from oglogstream.stack.broker.natsd import free_port

from tests.stack.query_helpers import OglogProcess

from .helpers import RetryingPoster, assert_exactly_once, wait_until

pytestmark = pytest.mark.timeout(90)


def test_processor_killed_and_restarted_loses_and_doubles_nothing(nats_server: Any, tmp_path: Path) -> None:
    """kill -9 of the processor while a client posts through a separate ingestion process: exact counts."""
    ingest_port, process_port = free_port(), free_port()
    env = {"NATS_URL": nats_server.url, "CLICKHOUSE_DSN": f"chdb://{tmp_path / 'clickhouse'}"}
    ingest_base, query_base = f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{process_port}"

    def processor(log: str) -> OglogProcess:
        return OglogProcess(
            ["serve", "process", "query"], tmp_path / log, env={**env, "HTTP_PORT": str(process_port)}
        )

    with OglogProcess(
        ["serve", "ingest"], tmp_path / "ingest.log", env={**env, "HTTP_PORT": str(ingest_port)}
    ) as ingest:
        ingest.wait_healthy(ingest_base)
        first = processor("process1.log")
        first.wait_healthy(query_base)
        poster = RetryingPoster(ingest_base, "prockill")
        poster.start()
        try:
            wait_until(lambda: poster.accepted_now() >= 200, timeout=20, what="posting")
            os.kill(first.proc.pid, signal.SIGKILL)
            first.kill()
            during = poster.accepted_now()
            wait_until(
                lambda: poster.accepted_now() >= during + 200, timeout=20, what="202s while it is down"
            )
            with processor("process2.log") as second:
                second.wait_healthy(query_base)
                after = poster.accepted_now()
                wait_until(
                    lambda: poster.accepted_now() >= after + 200, timeout=20, what="posting after restart"
                )
                accepted = poster.finish()
                assert set(poster.statuses) == {202}, poster.statuses  # ingestion never refused anything
                assert_exactly_once(query_base, "prockill", accepted)
                second.signal(signal.SIGTERM)
                assert second.wait(60) == 0, second.output()
        finally:
            poster.finish()
