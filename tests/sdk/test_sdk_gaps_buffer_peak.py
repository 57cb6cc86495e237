"""The memory bound is a bound (issue #10): captured records waiting in the intake plus encoded records
(pending and in flight) stay within `max_buffer_bytes`, measured at every call of a caller outrunning a
worker that keeps encoding while the server answers 503. Before: the intake's room was recomputed once per
batch (up to a batch's, or a whole backlog's, bytes over) and its 1,000-record floor came on top of a full
encoded buffer (+640,000 B). Left: the chunk being encoded (docs/sdk.md "Overflow")."""

from __future__ import annotations

import asyncio
import logging

import pytest
from oglogstream import AsyncOgLogClient, OgLogHandler
from oglogstream._core import DeliveryCore
from oglogstream._ingest import INGEST_CHUNK
from oglogstream._intake_charge import INTAKE_ITEM_BYTES
from oglogstream._settings import DEFAULT_MAX_BUFFER_BYTES

from .capture_server import CaptureServer

#: The documented tolerance: the records of the chunk being encoded left the intake's count before their
#: encoded lines arrived, so callers may fill their slots meanwhile.
TOLERANCE = INGEST_CHUNK * INTAKE_ITEM_BYTES
#: More records than the default budget (128 MiB) holds at either size below.
CALLS = 250_000


def _held(core: DeliveryCore, intake_len: int) -> int:
    """What the driver holds by its own accounting: the intake's charge (weights of mid-size records and
    events included) plus encoded bytes."""
    return core.intake_charged(intake_len) + core._pending.nbytes + core._inflight.nbytes


@pytest.fixture
def outage(server: CaptureServer) -> CaptureServer:
    server.fail_status = 503
    return server


@pytest.mark.parametrize("pad", [4, 900], ids=["short message", "900-character message"])
def test_thread_worker_peak_stays_within_the_budget(
    outage: CaptureServer, logger: logging.Logger, pad: int
) -> None:
    """Default handler, server answering 503, a tight loop of 250,000 records: the peak of what is held,
    sampled after every call, stays within the budget plus one encoding chunk (before: +1.09 MB with short
    messages, +640,000 B with 900-character ones), and every call is accounted for."""
    handler = OgLogHandler(outage.url, "peak")
    logger.addHandler(handler)
    pipeline = handler._pipeline
    intake = pipeline.intake
    text = "x" * pad
    peak = 0
    try:
        for i in range(CALLS):
            logger.info("request %d %s", i, text)
            peak = max(peak, _held(pipeline, len(intake)))
        stats = handler.stats()
        assert stats.sent + stats.dropped_total + stats.queued == CALLS
        assert peak <= DEFAULT_MAX_BUFFER_BYTES + TOLERANCE, peak - DEFAULT_MAX_BUFFER_BYTES
        if pad == 900:  # the budget was really reached: the bound is what stopped it
            assert stats.dropped.get("overflow", 0) > 0
    finally:
        handler.close(0.5)


def test_asyncio_client_peak_stays_within_the_budget(outage: CaptureServer) -> None:
    """The asyncio client's intake follows the same bound, its task encoding between the caller's awaits."""

    async def main() -> tuple[int, int]:
        client = AsyncOgLogClient(outage.url, "peak", drain_on_sigterm=False)
        text = "x" * 900
        peak = 0
        try:
            for i in range(CALLS):
                client.info("request", n=i, text=text)
                peak = max(peak, _held(client, len(client._intake)))
                if i % 500 == 0:
                    await asyncio.sleep(0)  # let the sending task encode
            stats = client.stats()
            assert stats.sent + stats.dropped_total + stats.queued == CALLS
            return peak, stats.dropped.get("overflow", 0)
        finally:
            await client.aclose(timeout=0.5)

    peak, overflow = asyncio.run(main())
    assert overflow > 0
    assert peak <= DEFAULT_MAX_BUFFER_BYTES + TOLERANCE, peak - DEFAULT_MAX_BUFFER_BYTES
